"""tokentail's exceptions. The gateway maps them to HTTP statuses; the worker ends runs with them.

TokentailError
├── SessionNotFound      404: no such session (or another tenant's)
│   └── SessionExpired   410: it existed, and its retention ran out or it was deleted
├── RunConflict          409: a run is already active and the follow-up asked `reject`
├── InvalidLastEventId   400: `Last-Event-ID` is not a non-negative integer
├── InputTooLarge        413: the input is longer than the configured bound
├── InvalidInput         422: a value the schema allows but this deployment does not (an unknown agent)
└── LeaseLost            a worker's append was fenced: another worker owns the run now
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


class InvalidLastEventId(TokentailError):
    def __init__(self, value: str) -> None:
        super().__init__(f"Last-Event-ID must be a non-negative integer event id, got {value!r}")


class InputTooLarge(TokentailError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"input exceeds {limit} characters")


class InvalidInput(TokentailError):
    pass


class LeaseLost(TokentailError):
    pass
