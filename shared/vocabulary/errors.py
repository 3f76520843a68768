"""tokentail's exceptions. The gateway maps them to HTTP statuses (gateway/errors.py); the worker
ends runs with them.

TokentailError           the base of every error tokentail raises (the clients' ApiError too)
├── SessionNotFound      404: no such session (or another tenant's)
│   └── SessionExpired   410: it existed, and its retention ran out or it was deleted
├── RunNotFound          404: the session has no such run
│   └── ClientRunNotFound 404: no run was posted as this AG-UI `runId` (or it is forgotten)
├── TaskNotFound         404: no such task of an agent protocol (or another tenant's)
├── QuestionNotFound     404: the run asked no such question
├── RunConflict          409: a run is already active and the follow-up asked `reject`
├── InputNotPending      409: an answer to a question the run no longer waits for
├── RunNotActive         409: a steer for a run that is not active (or none is)
├── SteerLimit           409: a steer for a run that took in as many steers as one run may
├── SessionExists        409: a chat's session exists already, and an input asked to make it anew
├── InvalidLastEventId   400: `Last-Event-ID` is not a non-negative integer
├── InputTooLarge        413: the input is longer than the configured bound
├── InvalidInput         422: a value the schema allows but this deployment does not (an unknown agent)
├── Unauthorized         401: no credentials, or an API key or stream token that is not valid
│   └── TokenExpired     401: a stream token past its expiry: refresh it
├── Forbidden            403: valid credentials that do not allow this (a stream token used on another session)
├── RateLimited          429: a tenant's runs per minute are used up (with `retry_after`)
│   ├── TooManyStreams   429: a tenant has as many streams open as it may
│   ├── ForkBytesLimited 429: a tenant's forks copied what they may this hour
│   ├── TooManySteers    429: as many steers wait for the run as may
│   └── QueuedRunLimit   429: a tenant's line holds as many runs waiting to start as it may
├── ArchiveUnavailable   503: the archive did not answer, for a read Redis could not serve
├── QueueingUnanswered   503: Redis did not answer whether a run was queued (with its ids, to look it up)
└── LeaseLost            a worker's append was fenced: another worker owns the run now

(not a client's error, never answered as one)
WritesLost               Redis lost events a run's worker appended: the run is taken over

(the exceptions an agent meets draw their own tree: worker/agent_errors.py)
"""


class TokentailError(Exception):
    pass


class SessionNotFound(TokentailError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found")
        self.session_id = session_id


class SessionExpired(SessionNotFound):
    def __init__(self, session_id: str) -> None:
        TokentailError.__init__(self, f"session {session_id!r} has expired or was deleted")
        self.session_id = session_id


class RunConflict(TokentailError):
    def __init__(self, session_id: str, active_run_id: str) -> None:
        super().__init__(f"session {session_id!r} already has an active run ({active_run_id})")
        self.active_run_id = active_run_id


class SessionExists(TokentailError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} exists already: queue its next run with POST .../runs")


class RunNotFound(TokentailError):
    def __init__(self, session_id: str, run_id: str) -> None:
        super().__init__(f"session {session_id!r} has no run {run_id!r}")


class ClientRunNotFound(RunNotFound):
    def __init__(self, client_run_id: str) -> None:
        shown = client_run_id if len(client_run_id) <= 80 else f"{client_run_id[:80]}..."
        TokentailError.__init__(self, f"no run was posted as runId {shown!r}, or it is no longer kept")


class TaskNotFound(TokentailError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")
        self.task_id = task_id


class QuestionNotFound(TokentailError):
    def __init__(self, run_id: str, input_id: str) -> None:
        super().__init__(f"run {run_id!r} asked no question {input_id!r}")


class InputNotPending(TokentailError):
    """An answer to a question the run no longer waits for: answered already, expired or cancelled."""


class RunNotActive(TokentailError):
    """A steer for a session with no active run, or for a run that is not the active one."""

    def __init__(self, session_id: str, run_id: str | None, active_run_id: str | None) -> None:
        if run_id and active_run_id:
            message = f"run {run_id!r} is not active: session {session_id!r} runs {active_run_id!r} now"
        elif run_id:
            message = f"run {run_id!r} is not active: session {session_id!r} has no active run"
        else:
            message = f"session {session_id!r} has no active run to steer: queue one with POST .../runs"
        super().__init__(message)
        self.active_run_id = active_run_id


class SteerLimit(TokentailError):
    """A steer for a run that took in as many steers, or characters of steers, as one run may."""

    def __init__(self, run_id: str, most: int, most_chars: int) -> None:
        super().__init__(
            f"run {run_id!r} took in as many steers as one run may ({most}, or {most_chars} characters in all:"
            " TOKENTAIL_MAX_STEERS_PER_RUN, TOKENTAIL_MAX_STEER_CHARS_PER_RUN): queue a follow-up run instead"
        )


class InvalidLastEventId(TokentailError):
    def __init__(self, value: str, expected: str = "a non-negative integer event id") -> None:
        shown = value if len(value) <= 40 else f"{value[:40]}... ({len(value)} characters)"
        super().__init__(f"Last-Event-ID must be {expected}, got {shown!r}")


class InputTooLarge(TokentailError):
    def __init__(self, limit: int, what: str = "input", unit: str = "characters") -> None:
        super().__init__(f"{what} exceeds {limit} {unit}")


class InvalidInput(TokentailError):
    pass


class Unauthorized(TokentailError):
    pass


class TokenExpired(Unauthorized):
    def __init__(self) -> None:
        super().__init__("the stream token has expired; refresh it with POST /v1/sessions/{session_id}/token")


class Forbidden(TokentailError):
    pass


class RateLimited(TokentailError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyStreams(RateLimited):
    pass


class ForkBytesLimited(RateLimited):
    pass


class TooManySteers(RateLimited):
    pass


class QueuedRunLimit(RateLimited):
    pass


class LeaseLost(TokentailError):
    pass


class QueueingUnanswered(TokentailError):
    """Redis did not answer whether the run was queued: a try's reply was lost, and Redis stayed out of
    reach while the gateway tried again. The client learns the ids to look the run up by."""

    def __init__(self, session_id: str, run_id: str) -> None:
        super().__init__(
            f"Redis did not answer in time whether run {run_id!r} of session {session_id!r} was queued: "
            f"GET /v1/sessions/{session_id} shows it if it was; send the request again once it does not, or "
            "with an Idempotency-Key, which makes a request safe to send again"
        )
        self.session_id, self.run_id = session_id, run_id


class WritesLost(Exception):
    """Redis lost events this run's worker appended (see worker/writes/lost_writes.py)."""

    def __init__(self, last_seq: int) -> None:
        super().__init__(f"the session's last seq is {last_seq}, below what this run wrote")
        self.last_seq = last_seq


class ArchiveUnavailable(TokentailError):
    """The archive (PostgreSQL) did not answer, for a read Redis could not serve."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"the archive is unavailable ({type(cause).__name__}): try again shortly")
