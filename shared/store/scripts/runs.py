"""The contracts of the scripts that change a session's runs (shared/store/lua/): queue, start, append,
ask, answer, cancel, hand over, renew, record (making, copying and deleting a session: sessions.py).

Those that queue or end runs (lib/runs.lua's `end_run`, lib/jobs.lua's `queue_job`) take the
session's `RunKeys` and `SessionArgs` first; the rest take the few keys they touch. Each declares
its reply (a reply of more than one value: by outcome, each field by name) as it declares its
arguments.
"""

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple

from redis.exceptions import ResponseError

from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import OPAQUE_RUN_FIELDS, compact_json
from tokentail.shared.store.scripts.checks import JobArgs, queued_look_ms
from tokentail.shared.store.scripts.contract import (
    ArgGroup,
    Effect,
    KeyGroup,
    Script,
    archived,
    only_if,
    shared_queue,
    single_redis,
)
from tokentail.shared.store.scripts.reply import Reply
from tokentail.shared.vocabulary.errors import LeaseLost, WritesLost
from tokentail.shared.vocabulary.records import RunRecord

# A session's undelivered webhook events are kept this long past the retry window, for the
# deliverer to find them expired and count them given up.
HOOKS_KEPT_AFTER_RETRIES = 3600


@dataclass(slots=True)
class RunKeys(KeyGroup):
    """A session's keys, then the queue's that a script writes in the same step when they share a
    Redis (arq's queue, the leases and webhooks indexes), then the archive index, with an archive."""

    meta: str
    runs: str
    events: str
    lease: str
    gone: str
    pending: str
    hooks: str
    steps: str
    steers: str
    steered: str
    parent: str  # the parent lane's meta (shared/store/keys.py `SessionKeys.parent`)
    root: str  # the session's own meta (`SessionKeys.root`)
    kept_steps: str
    queue: str | None = only_if(shared_queue)
    index: str | None = only_if(shared_queue)
    hook_index: str | None = only_if(shared_queue)
    archive: str | None = only_if(archived)
    # The console's index of runs failed or taken over (Keys.admin_troubled), written as a run ends; not
    # on a Redis Cluster, where it is a slot of its own (the overview reads the runs index instead).
    troubled: str | None = only_if(single_redis)


@dataclass(slots=True)
class SessionArgs(ArgGroup):
    """The deployment's settings a script that queues or ends runs needs, and the session's id."""

    session_id: str
    maxlen: int
    ttl: int
    tombstone: int
    job_ttl_ms: int
    wake_channel: str
    job_prefix: str
    job_function: str
    hooks_ttl_ms: int
    queued_look_ms: int  # when a reaper first looks at a queued run (shared/store/lease_index.py)
    admission: str  # as JobArgs'


@dataclass(slots=True)
class RunScope:
    """Builds `RunKeys` and `SessionArgs` for a session of this deployment."""

    keys: Keys
    settings: Settings

    def run_keys(self, session_id: str) -> RunKeys:
        k, keys = self.keys.session(session_id), self.keys
        session = (
            k.meta,
            k.runs,
            k.events,
            k.lease,
            k.gone,
            k.pending,
            k.hooks,
            k.steps,
            k.steers,
            k.steered,
            k.parent,
            k.root,
            k.kept_steps,
        )
        checks = (keys.lease_checks, keys.webhook_checks, keys.archive_checks)
        return RunKeys(*session, keys.queue, *checks, keys.admin_troubled())

    def args(self, session_id: str) -> SessionArgs:
        settings, job = self.settings, JobArgs.of(self.keys)  # the job settings, as push_job.lua's
        return SessionArgs(
            session_id,
            settings.stream_maxlen,
            settings.session_ttl_seconds,
            settings.tombstone_ttl_seconds,
            job.job_ttl_ms,
            job.wake_channel,
            job.job_prefix,
            job.job_function,
            (settings.webhook_retry_seconds + HOOKS_KEPT_AFTER_RETRIES) * 1000,
            queued_look_ms(settings.lease_ms),
            job.admission,
        )


def encode_run(run: RunRecord) -> str:
    """A run record as the scripts take it. They decode and re-encode run records with cjson, which
    turns [] into {} and large integers into floats: params travel through them as an opaque string."""
    record = run.model_dump(mode="json")
    for name in OPAQUE_RUN_FIELDS:
        record[name] = compact_json(record[name])
    return compact_json(record)


def raise_fenced(error: ResponseError) -> None:
    """A fenced script's FENCED error as LeaseLost, its LOST error as WritesLost (lib/seqs.lua's check_holder)."""
    message = str(error)
    if message.startswith("FENCED"):
        raise LeaseLost(message) from None
    if message.startswith("LOST"):
        raise WritesLost(int(message.split()[1])) from None


class Queued(StrEnum):
    """Where a queued run stands (queue_run.lua)."""

    STARTED = "started"  # its job is queued: it starts now
    PENDING = "pending"  # it waits in line behind the active run
    AGAIN = "again"  # queued before: a request sent again with its idempotency key
    STEERED = "steered"  # not queued: its input steers the active run (multitask `steer`)


class QueueOutcome(StrEnum):
    OK = "ok"
    LINE_FULL = "line_full"  # the tenant's line holds as many runs as it may: nothing was done
    AGAIN = "again"
    MISSING = "missing"
    GONE = "gone"
    EXISTS = "exists"
    CONFLICT = "conflict"
    STEERED = "steered"  # multitask `steer`: the active run takes the input in; no run recorded
    TOO_MANY_STEERS = "too_many_steers"  # multitask `steer`, and MAX_PENDING_STEERS wait already
    STEER_LIMIT = "steer_limit"  # multitask `steer`, and the active run took in as many steers as it may


class QueueReply(NamedTuple):
    outcome: QueueOutcome
    seq: int | None = None  # of its `run.queued` (STEERED: of its `steer.accepted`)
    queued: Queued | None = None
    active_run: str | None = None  # the run in the way (CONFLICT), or steered (STEERED, TOO_MANY_STEERS, STEER_LIMIT)
    ended: tuple[bytes, ...] = ()  # traced: the records, as they were, of the runs an interrupt ended
    # With the queue apart: what the session's outbox holds after it (a job owed; one to take out of its
    # tenant's line), which QueueApart pushes (`pushed`: whether the queue did not hold it).
    dispatch: bytes | None = None
    unqueue: bytes | None = None
    pushed: bool = False


@dataclass(slots=True)
class IndexArgs(ArgGroup):
    """Where queue_run.lua lists the run it queues in the console's runs index (lib/run_index.lua), and
    how: every run's sorted set (Keys.admin_runs; '': the caller lists it after, with IndexRun), the
    prefix of a tenant's (Keys.tenant_admin_runs, less the tenant), the run's own key (Keys.admin_run),
    when (µs), how many entries each set keeps, and how long the run's key is kept (s)."""

    all_runs: str
    tenant_prefix: str
    run: str
    score: int
    keep: int
    ttl: int

    @classmethod
    def none(cls) -> "IndexArgs":
        return cls("", "", "", 0, 0, 0)


@dataclass(slots=True)
class QueueRun(Script[QueueReply]):
    SOURCE = "queue_run"
    # TAKES_LEASE: an interrupt's cancel; MAY_DISPATCH: its 'ok' and 'again' carry the outbox.
    EFFECTS = Effect.ACKNOWLEDGED | Effect.QUEUES_JOB | Effect.MAY_DISPATCH | Effect.TAKES_LEASE
    k: RunKeys
    s: SessionArgs
    index: IndexArgs  # the console's runs index, listed in the same step (its `all_runs` '': not here)
    run_id: str
    run_json: str
    multitask: str
    queued_data: str
    create: str  # '1' a new session, '2' the session, made now if missing, '0' an existing one
    cancel_channel: str
    traced: str  # '1': reply with the records of the runs an interrupt ended, for their spans
    task_push: str  # '1': mark the session, whose push configs this task has (shared/features/a2a_push.py)
    steer_id: str  # multitask `steer`: the steer's id, should the input steer the active run
    steer_channel: str
    steer_chars: int  # multitask `steer`: the input's length, and the run's bounds (SteerRun's)
    most_steers: int
    most_steer_chars: int
    tenant: str  # the session's, if the caller knows it ('': read from its meta)
    line_bound: int  # runs the tenant's line may hold (0: not checked here; with the queue on this Redis only)
    fields: list[str]  # a session made: its meta fields, as name, value pairs

    REPLY = Reply(
        QueueReply,
        ok=("seq", "queued", "dispatch", "unqueue", "ended"),
        line_full=(),
        again=("seq", "queued", "dispatch", "unqueue"),
        conflict=("active_run",),
        missing=(),
        gone=(),
        exists=(),
        steered=("seq", "active_run"),
        too_many_steers=("active_run",),
        steer_limit=("active_run",),
    )

    def effects(self) -> Effect:
        return self.EFFECTS | Effect.MAY_REVIVE if self.create == "0" else self.EFFECTS


class StartVerdict(StrEnum):
    """What a worker that claimed a run does with it (start_run.lua)."""

    RUN = ""
    CANCEL = "cancel"  # a cancel is pending: end it cancelled
    EXHAUSTED = "exhausted"  # too many attempts: end it failed


class ClaimOutcome(StrEnum):
    OK = "ok"  # claimed
    DECIDE = "decide"  # a takeover, which the worker decides first (nothing was changed)
    INACTIVE = "inactive"  # the run is not the session's active one
    LEASED = "leased"  # another worker holds it
    NOT_RUNNING = "not_running"  # it ended


class Claim(NamedTuple):
    """start_run.lua's reply: `claimed`, or why not."""

    outcome: ClaimOutcome
    seq: int = 0  # the id of the event that started the attempt
    run_json: bytes = b""
    verdict: StartVerdict = StartVerdict.RUN
    steps: Any = ()  # the steps the run recorded, to replay: the steps hash, flat
    runs: Any = ()  # the records of the session's runs (JSON), none when the run is its only one
    steered: bool = False  # steers wait for it (lib/steers.lua)

    @property
    def claimed(self) -> bool:
        return self.outcome is ClaimOutcome.OK

    @property
    def decide(self) -> bool:
        return self.outcome is ClaimOutcome.DECIDE


@dataclass(slots=True)
class StartRun(Script[Claim]):
    SOURCE = "start_run"
    EFFECTS = Effect.ACKNOWLEDGED | Effect.CLAIMS_RUN
    k: RunKeys
    s: SessionArgs
    run_id: str
    lease_token: str
    lease_ms: int
    max_attempts: int
    job_id: str
    keep_until: str | int  # for a takeover: the id to keep events up to, 'restart', or '' (not decided)
    worker: str  # the worker process claiming it (shared/features/workers.py): the record lists each start's

    REPLY = Reply(
        Claim,
        ok=("seq", "run_json", "verdict", "steps", "runs", "steered"),
        decide=(),
        inactive=(),
        leased=(),
        not_running=(),
    )


class Appended(NamedTuple):
    """append.lua's reply: the seq of its last event, and, with the queue apart, after a terminal event,
    what the session's outbox holds (the next run's job; QueueApart pushes it: `pushed`)."""

    seq: int
    dispatch: bytes | None = None
    unqueue: bytes | None = None
    pushed: bool = False


@dataclass(slots=True)
class Append(Script[Appended]):
    """An append that may end the run or report to its webhook (the rest: `AppendEvents`)."""

    SOURCE = "append"
    k: RunKeys
    s: SessionArgs
    run_id: str
    lease_token: str
    append_id: str
    outcome: str  # the record's fields of a terminal event (JSON), or ''
    steer_failure: str  # with a terminal event: why the steers still waiting fail (`SteerFailure`), or ''
    told: str  # a terminal event's data as the gateways are told it, if not as stored ('': as stored)
    expect: int
    events: list[str]  # type, data pairs

    REPLY = Reply.of(Appended, "seq", "dispatch", "unqueue")

    def effects(self) -> Effect:
        # A terminal event is the run's last write (nothing would write it again after a failover),
        # goes to its webhook, and frees the session for the next run in line, whose job its reply names.
        ending = Effect.ACKNOWLEDGED | Effect.REPORTS | Effect.FREES_NEXT | Effect.MAY_DISPATCH
        return ending if self.outcome else Effect.NONE


@dataclass(slots=True)
class AppendShared(ArgGroup):
    maxlen: int
    count: int | str = ""  # the joined calls' count its process expects (JoinCounter), or '': unknown


@dataclass(slots=True)
class AppendKeys(KeyGroup):
    meta: str
    events: str
    lease: str


@dataclass(slots=True)
class AppendEvents(Script[int]):
    """The per-token path's checked appends: events that neither end a run nor go to a webhook, each
    append checked whole (its lease, a retry, events lost), many runs' in one call; one reply per
    append. What the lean path (`AppendAt`) refused comes here (worker/writes/appends.py)."""

    SOURCE = "append_events"
    JOINABLE = True
    s: AppendShared
    k: AppendKeys
    run_id: str
    lease_token: str
    expect: int
    events: list[str]  # type, data pairs

    def parse(self, reply: Any) -> int:
        seq = reply[-1]  # one call's reply: a joined call's part, or a call's own after its count
        if isinstance(seq, ResponseError):
            raise_fenced(seq)
            raise seq
        return int(seq)


@dataclass(slots=True)
class AppendAtKeys(KeyGroup):
    events: str
    meta: str | None = only_if(archived)  # its `archived` id: the stream keeps what the archive lacks


@dataclass(slots=True)
class AppendAt(Script[int]):
    """The per-token path's lean appends: each run's events at the ids after the last its worker was
    told it wrote, fenced by the stream itself (lib/seqs.lua); one reply per append, its last seq or
    0 when refused (then it goes through `AppendEvents`). Only in a call joined with the process's
    count (worker/writes/appends.py): it writes nothing unless the count is as its worker expects."""

    SOURCE = "append_at"
    JOINABLE = True
    COUNTED = True
    LIB = False
    s: AppendShared
    k: AppendAtKeys
    first: int  # the seq of its first event
    events: list[str]  # type, data pairs


class Steered(StrEnum):
    OK = "ok"  # kept: the run's agent takes it in at its next boundary
    AGAIN = "again"  # kept before: a request sent again (its run may have ended since)
    NOT_ACTIVE = "not_active"  # no run is active, or not the one named
    TOO_MANY = "too_many"  # MAX_PENDING_STEERS wait already
    LIMIT = "limit"  # the run took in as many steers, or characters of steers, as it may
    MISSING = "missing"
    GONE = "gone"


class SteerReply(NamedTuple):
    outcome: Steered
    seq: int | None = None  # of its `steer.accepted`
    run_id: str | None = None  # the run it steers (NOT_ACTIVE: the active run, if any)


@dataclass(slots=True)
class SteerRun(Script[SteerReply]):
    SOURCE = "steer"
    EFFECTS = Effect.ACKNOWLEDGED
    k: RunKeys
    s: SessionArgs
    steer_id: str
    input: str
    chars: int  # the input's length (characters, as the bounds count them)
    most: int  # steers one run may take in (0: no bound)
    most_chars: int  # characters of steers one run may take in (0: no bound)
    expected: str  # the run expected active, or '' (whichever)
    steer_channel: str

    REPLY = Reply(
        SteerReply,
        ok=("seq", "run_id"),
        again=("seq", "run_id"),
        not_active=("run_id",),
        too_many=("run_id",),
        limit=("run_id",),
        missing=(),
        gone=(),
    )


class Applied(StrEnum):
    APPLIED = "applied"
    NONE = "none"  # no steer waits


class AppliedSteers(NamedTuple):
    outcome: Applied
    seq: int | None = None  # of the last `steer.applied`
    steers: bytes | None = None  # the `Steer` records applied (a JSON list), as recorded in the step


@dataclass(slots=True)
class ApplySteers(Script[AppliedSteers]):
    SOURCE = "apply_steers"
    EFFECTS = Effect.ACKNOWLEDGED
    k: RunKeys
    s: SessionArgs
    run_id: str
    lease_token: str
    step_key: str
    output_at: int  # how many characters of the run's answer came before them
    expect: int

    REPLY = Reply(AppliedSteers, applied=("seq", "steers"), none=())


class Asked(StrEnum):
    """What became of a question a run asked (ask.lua)."""

    WAITING = "waiting"  # recorded: the run waits without a worker
    CANCEL = "cancel"  # a cancel is pending: end the run cancelled instead


class AskReply(NamedTuple):
    outcome: Asked
    seq: int | None = None  # of its (last) `input.required`


@dataclass(slots=True)
class Ask(Script[AskReply]):
    SOURCE = "ask"
    EFFECTS = Effect.ACKNOWLEDGED | Effect.REPORTS
    k: RunKeys
    s: SessionArgs
    run_id: str
    lease_token: str
    asked: str  # the run's questions (JSON, kept opaque)
    expect: int
    # Per question asked now, in order: its input.required event's data, its input id, its deadline
    # (Redis ms, or '' for none) and the answer it takes when it expires (JSON text, or '': the run fails).
    events: list[str]
    input_ids: list[str]
    deadlines: list[str]
    defaults: list[str]

    REPLY = Reply(AskReply, waiting=("seq",), cancel=())


class AnswerOutcome(StrEnum):
    OK = "ok"
    NOT_WAITING = "not_waiting"
    NO_RUN = "no_run"
    MISSING = "missing"
    GONE = "gone"


class AnswerReply(NamedTuple):
    outcome: AnswerOutcome
    seq: int | None = None  # of `input.received`


@dataclass(slots=True)
class Answer(Script[AnswerReply]):
    SOURCE = "answer"
    EFFECTS = Effect.ACKNOWLEDGED | Effect.QUEUES_JOB
    k: RunKeys
    s: SessionArgs
    run_id: str
    input_id: str
    answer: str  # JSON text
    job_suffix: str
    who: str  # who answered (the request's caller, as its logs name it), or ''
    gateway: str  # the gateway process that took the answer (shared/features/workers.py's process_id)

    REPLY = Reply(AnswerReply, ok=("seq",), not_waiting=(), no_run=(), missing=(), gone=())


@dataclass(slots=True)
class ExpireQuestion(Script[AnswerReply]):
    """Make a question the run waits for expire now: a reaper ends it as its deadline would."""

    SOURCE = "expire_question"
    EFFECTS = Effect.ACKNOWLEDGED
    k: RunKeys
    s: SessionArgs
    run_id: str
    input_id: str

    REPLY = Reply(AnswerReply, ok=(), not_waiting=(), no_run=(), missing=(), gone=())


class Cancel(StrEnum):
    SIGNALLED = "signalled"  # its worker was told, and writes `run.cancelled`
    CANCELLED = "cancelled"  # no worker held it: it ended at once
    IDLE = "idle"  # no run was active
    NOT_ACTIVE = "not_active"  # the run (or the segment of it) named is not the active one: left alone
    NO_RUN = "no_run"  # the run named is not the session's
    MISSING = "missing"
    GONE = "gone"


class CancelReply(NamedTuple):
    outcome: Cancel
    run_id: str | None = None  # the run it cancelled, or the one named that is not active


@dataclass(slots=True)
class CancelRun(Script[CancelReply]):
    SOURCE = "cancel_run"
    EFFECTS = Effect.ACKNOWLEDGED | Effect.QUEUES_JOB | Effect.TAKES_LEASE
    k: RunKeys
    s: SessionArgs
    cancel_channel: str
    reason: str
    expected: str  # the run expected active, or '' (whichever)
    segment: str  # its segment (RunRecord.segment), or '' (any)
    ended_at_question: str  # '1': left alone while it waits for the answer to that question
    rollback: str  # '1': also marked `rolled_back` (left out of the conversation)

    REPLY = Reply(
        CancelReply,
        signalled=("run_id",),
        cancelled=("run_id",),
        not_active=("run_id",),
        idle=(),
        no_run=(),
        missing=(),
        gone=(),
    )


class Requeue(StrEnum):
    REQUEUED = "requeued"
    RENEWED = "renewed"  # the holder renewed in time (or the question's deadline is to come): nothing to take over
    CLEARED = "cleared"  # no active run behind the entry (deleted session, ended run), or another reaper's
    NOT_HOLDER = "not_holder"  # a hand-over by a worker that no longer holds the lease
    PUSHED = "dispatch"  # no lease, a run owed a job not started yet: its job pushed again (a no-op if queued)


class Look(NamedTuple):
    """What a reaper found at a session, and when to look again (RENEWED, PUSHED)."""

    outcome: Requeue
    look_again_at: int | None = None  # ms: the renewed lease's deadline, the question's, or a queued run's next look
    dispatch: bytes | None = None  # the job owed to the session's run, which the queue apart must push
    expired: bytes | None = None  # the record of a run it failed, its question expired
    pushed: bool = False  # PUSHED: the job was gone, and is queued again


@dataclass(slots=True)
class RequeueRun(Script[Look]):
    SOURCE = "requeue_run"
    EFFECTS = Effect.REPORTS | Effect.MAY_DISPATCH | Effect.TAKES_LEASE
    k: RunKeys
    s: SessionArgs
    lease_token: str  # the holder's handing over, or '' (a reaper)
    job_suffix: str
    past_seq: str | int  # after lost events: the seq to move the session's up to, or ''

    REPLY = Reply(
        Look,
        requeued=("dispatch",),
        renewed=("look_again_at",),
        cleared=("dispatch", "expired"),
        not_holder=(),
        dispatch=("dispatch", "look_again_at", "pushed"),
    )


class Renewal(IntEnum):
    LOST = 0  # another worker holds the run now, or it ended: stop
    RENEWED = 1
    CANCEL_PENDING = 2  # renewed, and a cancel of the run is pending
    STEERED = 3  # renewed, and steers wait for the run's agent


@dataclass(slots=True)
class RenewKeys(KeyGroup):
    lease: str
    meta: str
    steers: str
    index: str | None = only_if(shared_queue)


@dataclass(slots=True)
class RenewLease(Script[Renewal]):
    SOURCE = "renew_lease"
    k: RenewKeys
    lease_token: str
    lease_ms: int
    run_id: str
    session_id: str

    def parse(self, reply: Any) -> Renewal:
        return Renewal(int(reply))


@dataclass(slots=True)
class StepKeys(KeyGroup):
    steps: str
    lease: str
    meta: str


class Recorded(StrEnum):
    OK = "ok"
    TOO_LARGE = "too_large"  # nothing was written


class StepRecord(NamedTuple):
    outcome: Recorded
    total: int  # what the run's recorded steps total (TOO_LARGE: would total)


@dataclass(slots=True)
class RecordStep(Script[StepRecord]):
    SOURCE = "record_step"
    k: StepKeys
    run_id: str
    lease_token: str
    step_key: str
    value: str  # JSON
    max_bytes: int
    seq: int  # the last event id the run wrote before the step

    REPLY = Reply(StepRecord, ok=("total",), too_large=("total",))


@dataclass(slots=True)
class UsageKeys(KeyGroup):
    runs: str
    lease: str
    meta: str


@dataclass(slots=True)
class RecordUsage(Script[None]):
    SOURCE = "record_usage"
    k: UsageKeys
    run_id: str
    lease_token: str
    attempt: int
    usage: str  # JSON object of counts
    seq: int  # the last event id the run wrote: what it streamed after is not reported yet

    def parse(self, reply: Any) -> None:
        return None
