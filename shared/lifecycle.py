"""The run lifecycle: every change to a session, each one Lua script (in `lua/`), and what each
script answered, typed.

Each script is loaded with `lua/lib.lua` in front, the vocabulary they share; those that queue or
end runs take the same leading keys and arguments (`RunLifecycle._run_script_args`). A script
touches one session's keys only (plus arq's, when the queue shares the Redis), so the sessions'
Redis may be a Cluster; with the queue apart, jobs go through the session's outbox (`_outbox`),
and the leases index is kept beside the queue (shared/lease_index.py).

The gateway queues, cancels and deletes; a worker starts a run and then acts on it through the
`RunLease` it was given: append, renew, hand over. Its appends also say what it was told it wrote
before, so that events Redis lost are appended again under their ids (shared/write_journal.py).
"""

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NoReturn, Protocol, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from tokentail.shared.errors import (
    InputNotPending,
    LeaseLost,
    RunConflict,
    RunNotFound,
    SessionExists,
    SessionExpired,
    SessionNotFound,
    StepTooLarge,
)
from tokentail.shared.events import (
    CANCELLED_BY_REQUEST,
    Ending,
    InputReceived,
    InputRequired,
    RunCompleted,
    RunFailed,
    event_type_of,
)
from tokentail.shared.jobs import JOB_TTL_MS, RUN_JOB
from tokentail.shared.keys import Keys
from tokentail.shared.lease_index import LeaseIndex
from tokentail.shared.logs import log_context
from tokentail.shared.lua import load_script
from tokentail.shared.records import MAX_RUN_STEPS_BYTES, Multitask, Question, RunRecord, SessionRecord
from tokentail.shared.redis_clients import AnyRedis, replicated, write_replicated
from tokentail.shared.settings import Settings
from tokentail.shared.store import (
    OPAQUE_RUN_FIELDS,
    ForkSource,
    add_steps,
    branch_kept_seconds,
    compact_json,
    decode_run,
)
from tokentail.shared.webhook_index import WebhookIndex
from tokentail.shared.webhook_messages import HOOKED_EVENTS
from tokentail.shared.write_journal import WriteJournal

logger = logging.getLogger(__name__)
T = TypeVar("T")

if TYPE_CHECKING:
    from tokentail.shared.archive import Archive

# A session's undelivered webhook events are kept this long past the retry window, for the
# deliverer to find them expired and count them given up.
HOOKS_KEPT_AFTER_RETRIES = 3600


class Queued(StrEnum):
    """Where a queued run stands (queue_run.lua)."""

    STARTED = "started"  # its job is queued: it starts now
    PENDING = "pending"  # it waits in line behind the active run
    AGAIN = "again"  # queued before: a request sent again with its idempotency key


class StartVerdict(StrEnum):
    """What a worker that claimed a run does with it (start_run.lua)."""

    RUN = ""
    CANCEL = "cancel"  # a cancel is pending: end it cancelled
    EXHAUSTED = "exhausted"  # too many attempts: end it failed


class Renewal(IntEnum):
    LOST = 0  # another worker holds the run now, or it ended: stop
    RENEWED = 1
    CANCEL_PENDING = 2  # renewed, and a cancel of the run is pending


class Requeue(StrEnum):
    REQUEUED = "requeued"
    RENEWED = "renewed"  # the holder renewed in time: nothing to take over
    CLEARED = "cleared"  # no active run behind the entry (deleted session, ended run), or another reaper's
    NOT_HOLDER = "not_holder"  # a hand-over by a worker that no longer holds the lease
    PUSHED = "dispatch"  # no lease, but a job the outbox held: pushed (again) to the queue


class Look(NamedTuple):
    """What a reaper found at a session, and when to look again if its lease was renewed."""

    outcome: Requeue
    lease_until: int | None = None


class Asked(StrEnum):
    """What became of a question a run asked (ask.lua)."""

    WAITING = "waiting"  # recorded: the run waits without a worker
    CANCEL = "cancel"  # a cancel is pending: end the run cancelled instead


class Cancel(StrEnum):
    SIGNALLED = "signalled"  # its worker was told, and writes `run.cancelled`
    CANCELLED = "cancelled"  # no worker held it: it ended at once
    IDLE = "idle"  # no run was active
    NOT_ACTIVE = "not_active"  # the run (or the segment of it) named is not the active one: left alone


class ScriptCall(Protocol):
    async def __call__(self, keys: list[Any], args: list[Any]) -> Any: ...


@dataclass(frozen=True, slots=True)
class RunLease:
    """A run as the one worker that started it holds it: every write it makes on the run is fenced
    by `token`, and fails with `LeaseLost` once another worker holds the run or it ended."""

    runs: "RunLifecycle"
    session_id: str
    run_id: str
    token: str
    journal: WriteJournal = field(default_factory=WriteJournal, compare=False, repr=False)

    async def append(
        self, events: Sequence[tuple[str, str]], append_id: str | None = None, ending: Ending | None = None
    ) -> int:
        return await self.runs.append(self, events, append_id, ending)

    def append_soon(self, events: Sequence[tuple[str, str]], append_id: str) -> "asyncio.Future[int]":
        """`append(events, append_id)` for events that neither end the run nor go to a webhook, as a
        future: on the worker's batched path, without a task of its own."""
        return self.runs.append_soon(self, events, append_id)

    async def renew(self) -> Renewal:
        return await self.runs.renew_lease(self)

    async def ask(self, asked: list[Question], event: InputRequired, on_expiry: tuple[str, str] | None) -> Asked:
        """Record the last question of `asked` and give the run up until it is answered."""
        return await self.runs.ask(self, asked, event, on_expiry)

    async def hand_over(self) -> Requeue:
        """Give the run to another worker (this one is stopping)."""
        return await self.runs.requeue_run(self.session_id, self.token)

    async def record_step(self, key: str, value_json: str) -> None:
        """Keep the result of step `key` in the run's record, for a worker that continues the run."""
        await self.runs.record_step(self, key, value_json)

    async def record_usage(self, attempt: int, usage: dict[str, int]) -> None:
        """Keep what attempt `attempt` has cost so far in the run's record (record_usage.lua)."""
        await self.runs.record_usage(self, attempt, usage)


Takeover = int | Literal["restart"]  # how a taken-over run goes: on, keeping its events up to an id; or over


class Started(NamedTuple):
    lease: RunLease
    run: RunRecord
    verdict: StartVerdict


def encode_run(run: RunRecord) -> str:
    # The Lua scripts decode and re-encode run records with cjson, which turns [] into {} and large
    # integers into floats: params travel through them as an opaque string.
    record = run.model_dump(mode="json")
    for name in OPAQUE_RUN_FIELDS:
        record[name] = compact_json(record[name])
    return compact_json(record)


def stored_ending(ending: Ending) -> tuple[str, str]:
    """A terminal event as the stream keeps it, and the fields its run record keeps (append.lua).
    A completed run's output is stored once, in its record; the store's `with_output` adds it back."""
    if isinstance(ending, RunCompleted):
        fields = {"output": ending.output, "usage": ending.usage}
        return ending.model_dump_json(exclude={"output"}), compact_json(fields)
    usage = {"usage": ending.usage} if ending.usage is not None else {}
    if isinstance(ending, RunFailed):
        return ending.model_dump_json(), compact_json({"error": ending.error.model_dump(), **usage})
    return ending.model_dump_json(), compact_json({"reason": ending.reason, **usage})


@contextlib.contextmanager
def _fenced() -> Iterator[None]:
    """Around a script fenced by the run's lease: its FENCED error is a LeaseLost, its LOST error a
    WritesLost (lib.lua's check_holder)."""
    try:
        yield
    except ResponseError as exc:
        if str(exc).startswith("FENCED"):
            raise LeaseLost(str(exc)) from None
        if str(exc).startswith("LOST"):
            raise WritesLost(int(str(exc).split()[1])) from None
        raise


class WritesLost(Exception):
    """Redis lost events this run's worker appended (see shared/write_journal.py)."""

    def __init__(self, last_seq: int) -> None:
        super().__init__(f"the session's last seq is {last_seq}, below what this run wrote")
        self.last_seq = last_seq


def _plain_seq(reply: list[Any]) -> int:
    """The seq of append_events.lua's one append, or the LeaseLost of a fenced one."""
    (seq,) = reply
    if isinstance(seq, ResponseError):
        with _fenced():
            raise seq
    return int(seq)


def _pass_on(appended: "asyncio.Future[int]", done: "asyncio.Future[int]") -> None:
    if appended.done():
        return
    if done.cancelled():
        appended.cancel()
    elif (error := done.exception()) is not None:
        appended.set_exception(error)
    else:
        appended.set_result(done.result())


def _missing_or_gone(outcome: bytes, session_id: str) -> None:
    if outcome == b"gone":
        raise SessionExpired(session_id)
    if outcome == b"missing":
        raise SessionNotFound(session_id)


class RunLifecycle:
    def __init__(
        self,
        redis: AnyRedis,
        settings: Settings,
        batched: Callable[[str, bool], ScriptCall] | None = None,
        queue: Redis | None = None,
        archive: "Archive | None" = None,
    ) -> None:
        """`redis`: the sessions' Redis (a `RedisCluster` with `settings.redis_cluster`); `queue`:
        the queue's, when it is apart (`settings.queue_redis_url`). `batched(script, joinable)`, if
        given, sends the scripts called per run and often (append_events, which many calls can join,
        and renew_lease) instead of calling them one by one: the worker batches them
        (worker/pipelines.py). `archive`: where a session Redis forgot is brought back from."""
        self.redis = redis
        self.settings = settings
        self.archive = archive  # a new turn on a session only the archive holds brings it back
        self.keys = Keys(settings.key_prefix)
        if queue is None and isinstance(redis, RedisCluster):
            raise ValueError("a Redis Cluster cannot hold the job queue: give the queue's Redis")
        self.leases = LeaseIndex(queue or redis, settings)  # type: ignore[arg-type]
        self.webhooks = WebhookIndex(queue or redis, self.keys)  # type: ignore[arg-type]
        self._split = settings.split_queue
        # With the queue apart, the callers of scripts that may report a webhook event keep the
        # webhooks index (shared/webhook_index.py): only when webhooks are on.
        self._hook_intents = self._split and bool(settings.webhook_allowed_urls)
        # The queue's keys a script writes in the same step as the session's, when they share a
        # Redis: arq's queue, and the leases and webhooks indexes, which the scripts then keep (lib.lua).
        self._index_keys = [] if self._split else [self.keys.lease_checks]
        self._queue_keys = [] if self._split else [self.keys.queue, *self._index_keys, self.keys.webhook_checks]

        # On a Sentinel setup, what a client is told is done (a session made, a run queued, answered or
        # cancelled), and a run's first and last writes (its start; its end, or its question), are done
        # once a replica has them too, so a failover cannot take them back. The events between are not
        # waited for: the run appends again what a failover lost (shared/write_journal.py).
        self._replica = not settings.redis_cluster and replicated(settings.redis_url)

        # With an archive, the scripts that end or start runs put their session in the archive index.
        self._archive_keys = [self.keys.archive_checks] if settings.archive_url else []

        def source(name: str) -> str:
            return load_script(
                name, cluster=settings.redis_cluster, split_queue=self._split, archive=bool(settings.archive_url)
            )

        def script(name: str) -> Any:
            return redis.register_script(source(name))  # type: ignore[misc]  # a cluster client has it too

        self._create_session = script("create_session")
        self._delete_session = script("delete_session")
        self._queue_run = script("queue_run")
        self._start_run = script("start_run")
        self._append = script("append")
        self._append_events: ScriptCall = batched(source("append_events"), True) if batched else script("append_events")
        self._renew_lease: ScriptCall = batched(source("renew_lease"), False) if batched else script("renew_lease")
        # The batched script also takes a call without a task of its own (worker/pipelines.py).
        self._submit_plain: Callable[[list[Any], list[Any]], asyncio.Future[Any]] | None = getattr(
            self._append_events, "submit", None
        )
        self._appending_again: set[asyncio.Future[int]] = set()  # held: the loop keeps tasks weakly
        self._requeue_run = script("requeue_run")
        self._cancel_run = script("cancel_run")
        self._ask = script("ask")
        self._record_step = script("record_step")
        self._record_usage = script("record_usage")
        self._answer = script("answer")
        self._revive_session = script("revive_session")
        self._fork_session = script("fork_session")

    def _run_script_args(self, session_id: str) -> tuple[list[str], list[str | int]]:
        """The keys and arguments every script that queues or ends runs starts with (lib.lua)."""
        keys = self.keys.session(session_id)
        session_keys = [keys.meta, keys.runs, keys.events, keys.lease, keys.gone, keys.pending, keys.hooks, keys.steps]
        return [*session_keys, *self._queue_keys, *self._archive_keys], [
            session_id,
            self.settings.stream_maxlen,
            self.settings.session_ttl_seconds,
            self.settings.tombstone_ttl_seconds,
            JOB_TTL_MS,
            self.keys.wake_channel,
            self.keys.arq_job(""),
            RUN_JOB,
            (self.settings.webhook_retry_seconds + HOOKS_KEPT_AFTER_RETRIES) * 1000,
        ]

    # -- the gateway's --------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord) -> bool:
        """Create a session with no run yet; like a finished one, it expires if left unused. False if
        it exists already (a client-chosen chat id used before)."""
        keys = self.keys.session(session.session_id)
        fields = [item for pair in self._session_fields(session) for item in pair]
        args = [self.settings.session_ttl_seconds, self.settings.tombstone_ttl_seconds, session.tenant, *fields]
        made = await self._acknowledged(self._create_session, [keys.meta, keys.gone], args)
        if made == -1:
            raise SessionExpired(session.session_id)
        return bool(made)

    async def queue_run(
        self,
        session_id: str,
        run: RunRecord,
        *,
        multitask: Multitask = "reject",
        create: SessionRecord | None = None,
        if_missing: bool = False,
    ) -> Queued:
        """Record `run` (setting its `queued_seq`), append `run.queued` and queue its job; with
        `create`, make the session first (`if_missing`: only if it does not exist yet). With a run
        already active, `multitask` decides (see queue_run.lua)."""
        keys, args = self._run_script_args(session_id)
        fields = [item for pair in self._session_fields(create) for item in pair] if create else []
        queued = compact_json({"run_id": run.run_id, "input": run.input})
        mode = "0" if create is None else "2" if if_missing else "1"
        args += [run.run_id, encode_run(run), multitask, queued, mode, self.keys.cancel_channel]
        for revived in (False, True):  # a session only the archive holds is brought back, once
            async with self._outbox(session_id):
                result = await self._acknowledged(self._queue_run, keys, [*args, *fields])
            outcome = result[0]
            if outcome != b"missing" or create is not None or revived or not await self._revive(session_id):
                break
        if outcome == b"ok":
            run.queued_seq = int(result[1])
            return Queued(result[2].decode())
        if outcome == b"again":
            run.queued_seq = int(result[1])
            return Queued.AGAIN
        if outcome == b"conflict":
            raise RunConflict(session_id, result[1].decode())
        if outcome == b"exists":
            raise SessionExists(session_id)
        _missing_or_gone(outcome, session_id)
        raise RuntimeError(f"queue_run.lua answered {result!r}")

    async def _revive(self, session_id: str) -> bool:
        """A session only the archive still holds, back in Redis (revive_session.lua): whether it was."""
        archived = await self.archive.session(session_id) if self.archive is not None else None
        if archived is None:
            return False
        session = SessionRecord.model_validate_json(archived.record)
        keys = self.keys.session(session_id)
        fields = [item for pair in self._session_fields(session) for item in pair]
        records = [item for run in session.runs for item in (run.run_id, encode_run(run))]
        ttl = self.settings.session_ttl_seconds
        args = [archived.last_event_id, ttl, len(fields), *fields, *records]
        await self._revive_session(keys=[keys.meta, keys.runs], args=args)
        return True

    async def fork(self, fork: SessionRecord, source: ForkSource) -> bool:
        """Make session `fork` (its record: the source's, with its own id, time and lineage) from
        `source`, read just before (`SessionStore.fork_source`): its events, and the runs `fork`
        lists, as stored (fork_session.lua). False if a session of that id exists already."""
        keys = self.keys.session(fork.session_id)
        fields = [item for pair in self._session_fields(fork) for item in pair]
        records = [item for run in fork.runs for item in (run.run_id, source.runs[run.run_id])]
        events = [item for event in source.events for item in (event.seq, event.type, event.data, event.ts_us)]
        settings = self.settings
        args = [fork.session_id, settings.session_ttl_seconds, settings.tombstone_ttl_seconds, len(fields) // 2]
        args += [*fields, len(fork.runs), *records, *events]
        made = await self._acknowledged(
            self._fork_session, [keys.meta, keys.runs, keys.events, keys.gone, *self._archive_keys], args
        )
        if made == -1:
            raise SessionExpired(fork.session_id)
        return bool(made)

    async def point_chat(self, chat_session_id: str, branch: str) -> None:
        """From now on the chat of session `chat_session_id` goes on in session `branch` (a fork),
        for as long as the chat is used (`SessionStore.chat_branch` keeps it)."""
        key = self.keys.session(chat_session_id).branch
        if self.settings.archive_url:
            await self.redis.set(key, branch)  # sessions are kept for good: so is the chat's branch
        else:
            await self.redis.set(key, branch, ex=branch_kept_seconds(self.settings))

    async def answer(self, session_id: str, run: RunRecord, input_id: str, answer: Any) -> int:
        """Answer the question `run` waits for (see answer.lua) and queue it again; the seq of
        `input.received`. `run` as read just before: its answers so far are kept."""
        keys, args = self._run_script_args(session_id)
        answers = compact_json({**run.answers, input_id: answer})
        received = InputReceived(run_id=run.run_id, input_id=input_id, answer=answer).model_dump_json()
        args += [run.run_id, input_id, answers, received, secrets.token_hex(4)]
        async with self._outbox(session_id):
            result = await self._acknowledged(self._answer, keys, args)
        if result[0] == b"ok":
            return int(result[1])
        if result[0] == b"not_waiting":
            raise InputNotPending(f"run {run.run_id!r} is not waiting for an answer to {input_id!r}")
        if result[0] == b"no_run":
            raise RunNotFound(session_id, run.run_id)
        _missing_or_gone(result[0], session_id)
        raise RuntimeError(f"answer.lua answered {result!r}")

    async def cancel_run(
        self,
        session_id: str,
        run_id: str | None = None,
        segment: int | None = None,
        ended_at_question: bool = False,
    ) -> tuple[Cancel, str | None]:
        """Cancel the active run (see cancel_run.lua); what became of it, and its id. A caller that
        saw a run names it (`run_id`): only that run is cancelled, if it is still the active one
        (`NOT_ACTIVE` otherwise). A Responses API response adds its `segment` (the run's answers
        before it): only while the run is still in it; `ended_at_question`: not while the run waits
        for the answer to the question that ended it either. `RunNotFound` if the run is not the session's."""
        if segment is not None and run_id is None:
            raise ValueError("a segment is a run's: name the run")
        keys, args = self._run_script_args(session_id)
        async with self._outbox(session_id):  # the run in line behind it may start now
            named = [run_id or "", "" if segment is None else segment, "1" if ended_at_question else "0"]
            cancel = [*args, self.keys.cancel_channel, CANCELLED_BY_REQUEST, *named]
            result = await self._acknowledged(self._cancel_run, keys, cancel)
        _missing_or_gone(result[0], session_id)
        if result[0] == b"no_run":
            raise RunNotFound(session_id, run_id or "")
        return Cancel(result[0].decode()), result[1].decode() if len(result) > 1 else None

    async def delete_session(self, session: SessionRecord) -> None:
        """Delete the session (see delete_session.lua): its run's worker is fenced, its followers end."""
        keys = self.keys.session(session.session_id)
        await self._delete_session(
            keys=[
                *(keys.meta, keys.runs, keys.events, keys.lease, keys.pending, keys.gone, keys.steps),
                *self._index_keys,
                *self._archive_keys,
            ],
            args=[session.tenant, self.settings.tombstone_ttl_seconds, session.session_id],
        )

    async def writable(self) -> None:
        """Raise as Redis would if it refuses writes now (out of memory, a read-only replica)."""
        await self.redis.set(self.keys.probe, 1, px=10_000)
        if self.leases.redis is not self.redis:
            await self.leases.redis.set(self.keys.probe, 1, px=10_000)

    async def _acknowledged(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """A script a failover must not take back (see `_replica`)."""
        return await write_replicated(
            self.redis,  # type: ignore[arg-type]  # not a cluster when replicated
            lambda client: script(keys=keys, args=args, client=client),
            self._replica,
        )

    @contextlib.asynccontextmanager
    async def _outbox(self, session_id: str) -> AsyncIterator[None]:
        """Around a script that may queue a job: with the queue apart, the job waits in the
        session's outbox; push it after the script, and leave an intent in the leases index
        before, so that a reaper pushes it if this process dies in between."""
        if not self._split:
            yield
            return
        intent = await self.leases.intend(session_id)
        async with self._hooks(session_id):
            yield
        await self._push_outbox(session_id)
        await self.leases.forget(intent)

    @contextlib.asynccontextmanager
    async def _hooks(self, session_id: str) -> AsyncIterator[None]:
        """Around a script that may report a webhook event: with the queue apart, the session goes
        in the webhooks index before (should this process die before after) and after, due now."""
        if not self._hook_intents:
            yield
            return
        await self.webhooks.intend(session_id)
        yield
        await self.webhooks.due_now(session_id)

    async def _push_outbox(self, session_id: str) -> None:
        dispatch = await self.redis.hget(self.keys.session(session_id).meta, "dispatch")  # type: ignore[misc]
        if dispatch:
            await self.leases.push(session_id, dispatch)

    @staticmethod
    def _session_fields(session: SessionRecord) -> list[tuple[str, str]]:
        fields = [
            ("created_at", repr(session.created_at)),
            ("tenant", session.tenant),
            ("model", session.model or ""),
            ("agent", session.agent or ""),
            ("params", compact_json(session.params)),
            ("metadata", compact_json(session.metadata)),
        ]
        if session.lineage:
            fields.append(("lineage", compact_json([origin.model_dump() for origin in session.lineage])))
        return [*fields, ("webhook", session.webhook)] if session.webhook else fields

    # -- the worker's ---------------------------------------------------------------------------

    async def start_run(
        self,
        session_id: str,
        run_id: str,
        job_id: str,
        token: str | None = None,
        takeover: Takeover | Callable[[], Awaitable[Takeover]] = "restart",
    ) -> Started | None:
        """Claim the run under a new lease (`run.started`) and take job `job_id` out of arq's queue;
        None if it is not ours to run. A takeover goes as `takeover` says: on, keeping the run's
        events up to that id (`run.continued`), or over (`restart`: `run.retrying`, `run.started`);
        a function decides, called only for a takeover (worker/continuation.py)."""
        lease = RunLease(self, session_id, run_id, token or secrets.token_hex(16))
        keys, args = self._run_script_args(session_id)
        args += [run_id, lease.token, self.settings.lease_ms, self.settings.max_attempts, job_id]
        args.append("" if callable(takeover) else takeover)
        if self._split:
            await self.leases.watch(session_id)  # first: a reaper must find every lease (lease_index.py)
        result = await self._acknowledged(self._start_run, keys, args)
        if result[0] == b"decide" and callable(takeover):  # nothing changed: decide, and claim it again
            args[-1] = await takeover()
            result = await self._acknowledged(self._start_run, keys, args)
        if result[0] != b"ok":
            return None
        if self._split:
            await self.leases.take(job_id)
        run = decode_run(result[2])
        add_steps(run, result[4])
        return Started(lease, run, StartVerdict(result[3].decode()))

    async def append(
        self,
        lease: RunLease,
        events: Sequence[tuple[str, str]],
        append_id: str | None = None,
        ending: Ending | None = None,
    ) -> int:
        """Append `(type, data_json)` events under the run's lease, then the run's terminal event if
        it `ending`; returns the last seq. Sending the same `append_id` again (after a lost reply)
        appends nothing twice. Events of the run that Redis lost are appended again first."""
        append_id = append_id or secrets.token_hex(8)
        seq = await self._after_lost_events(lease, lambda: self._append_once(lease, events, append_id, ending))
        if ending is None:
            lease.journal.wrote(append_id, events, seq)
        return seq

    async def _after_lost_events(self, lease: RunLease, write: Callable[[], Awaitable[T]]) -> T:
        """`write()`, a write of the run's worker; if Redis lost events the run wrote before (LOST),
        those first, appended again under their ids."""
        while True:
            try:
                return await write()
            except WritesLost as lost:
                await self._append_again(lease, lost.last_seq)

    async def _append_once(
        self,
        lease: RunLease,
        events: Sequence[tuple[str, str]],
        append_id: str,
        ending: Ending | None,
        expect: int | None = None,
    ) -> int:
        expect = lease.journal.written if expect is None else expect
        if ending is None and not any(event_type in HOOKED_EVENTS for event_type, _ in events):
            keys, args = self._plain_call(lease, events, append_id, expect)
            return _plain_seq(await self._append_events(keys=keys, args=args))
        outcome = ""
        if ending is not None:
            stored, outcome = stored_ending(ending)
            events = [*events, (event_type_of(ending), stored)]
        keys, args = self._run_script_args(lease.session_id)
        args += [lease.run_id, lease.token, append_id, outcome, expect]
        for event_type, data in events:
            args += [event_type, data]
        with _fenced():
            if ending is None:
                seq = await self._append(keys=keys, args=args)
            else:
                async with self._hooks(lease.session_id):
                    # The run's last write: a failover must not take it back, as nothing would write it again.
                    seq = await self._acknowledged(self._append, keys, args)
        if ending is not None and self._split:
            # The run in line behind this one may be in the outbox now. Should this process die
            # first, the run's entry in the leases index (its lease, now gone) makes a reaper push it.
            await self._push_outbox(lease.session_id)
        return int(seq)

    async def _append_again(self, lease: RunLease, last_seq: int) -> None:
        """Append again, under their ids, the run's events after `last_seq` that Redis lost; if it
        cannot as they were, hand the run over past them and stop (LeaseLost)."""
        lost = lease.journal.lost(last_seq)
        if lost is None:
            await self._hand_over_past_lost(lease)
        for append in lost or ():
            if await self._append_once(lease, append.events, append.append_id, None, append.first - 1) != append.last:
                await self._hand_over_past_lost(lease)  # someone appended meanwhile: the ids cannot be the same
        with log_context(session_id=lease.session_id, run_id=lease.run_id):  # called back in any run's context
            logger.warning("appended again the %d events Redis lost", lease.journal.written - last_seq)

    async def _hand_over_past_lost(self, lease: RunLease) -> NoReturn:
        """Events lost that the run cannot append again as they were: followers may have read them, so
        the run goes on after them (requeue_run.lua), in another attempt, and this one stops."""
        handed = await self.requeue_run(lease.session_id, lease.token, past_seq=lease.journal.written)
        with log_context(session_id=lease.session_id, run_id=lease.run_id):
            logger.warning(
                "Redis lost events the run cannot append again as they were: it goes on after %d (%s)",
                lease.journal.written,
                handed,
            )
        raise LeaseLost(f"Redis lost events of run {lease.run_id} that its worker cannot append again as they were")

    def append_soon(self, lease: RunLease, events: Sequence[tuple[str, str]], append_id: str) -> "asyncio.Future[int]":
        """See `RunLease.append_soon`."""
        if self._submit_plain is None:
            return asyncio.ensure_future(self.append(lease, events, append_id))
        appended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        sent = self._submit_plain(*self._plain_call(lease, events, append_id, lease.journal.written))
        sent.add_done_callback(functools.partial(self._settle_soon, lease, events, append_id, appended))
        return appended

    def _settle_soon(
        self,
        lease: RunLease,
        events: Sequence[tuple[str, str]],
        append_id: str,
        appended: "asyncio.Future[int]",
        sent: "asyncio.Future[Any]",
    ) -> None:
        if appended.done():
            return
        try:
            seq = _plain_seq(sent.result())
        except WritesLost:  # rare: append the lost events again, then this one, in a task
            again = asyncio.ensure_future(self.append(lease, events, append_id))
            self._appending_again.add(again)
            again.add_done_callback(self._appending_again.discard)
            again.add_done_callback(functools.partial(_pass_on, appended))
        except BaseException as exc:  # the round trip's error, or the append's own
            appended.set_exception(exc)
        else:
            lease.journal.wrote(append_id, events, seq)
            appended.set_result(seq)

    def _plain_call(
        self, lease: RunLease, events: Sequence[tuple[str, str]], append_id: str, expect: int
    ) -> tuple[list[Any], list[Any]]:
        """An append_events.lua call: the per-token path, for events that neither end the run nor go
        to a webhook, whose calls the worker sends many runs' at a time."""
        keys = self.keys.session(lease.session_id)
        args: list[str | int] = [self.settings.stream_maxlen, lease.run_id, lease.token, append_id, expect, len(events)]
        for event_type, data in events:
            args += [event_type, data]
        return [keys.meta, keys.events, keys.lease], args

    async def ask(
        self, lease: RunLease, asked: list[Question], event: InputRequired, on_expiry: tuple[str, str] | None
    ) -> Asked:
        """See `RunLease.ask`; `on_expiry`: the answers and the `input.received` data a question that
        takes its default answer when it expires goes on with."""
        question = asked[-1]
        keys, args = self._run_script_args(lease.session_id)
        deadline = "" if question.expires_at is None else str(int(question.expires_at * 1000))
        asked_json = compact_json([q.model_dump(mode="json", by_alias=True) for q in asked])
        args += [
            lease.run_id,
            lease.token,
            event.model_dump_json(by_alias=True),
            asked_json,
            question.input_id,
            deadline,
            lease.journal.written,
        ]
        if on_expiry is not None:
            args += list(on_expiry)

        async def ask() -> Any:
            with _fenced():
                async with self._hooks(lease.session_id):
                    # The run's last write until it is answered: a failover must not take it back.
                    return await self._acknowledged(self._ask, keys, args)

        result = await self._after_lost_events(lease, ask)
        return Asked(result[0].decode())

    async def record_step(self, lease: RunLease, key: str, value_json: str) -> None:
        keys = self.keys.session(lease.session_id)
        with _fenced():
            recorded = await self._record_step(
                keys=[keys.steps, keys.lease, keys.meta],
                args=[lease.run_id, lease.token, key, value_json, MAX_RUN_STEPS_BYTES],
            )
        if isinstance(recorded, list):  # ['too_large', total]: nothing was written
            raise StepTooLarge(
                f"step {key!r}: the run's recorded steps would total {int(recorded[1])} bytes, over"
                f" {MAX_RUN_STEPS_BYTES} (MAX_RUN_STEPS_BYTES): record less (a key to a result kept elsewhere)"
            )

    async def record_usage(self, lease: RunLease, attempt: int, usage: dict[str, int]) -> None:
        keys = self.keys.session(lease.session_id)
        with _fenced():
            await self._record_usage(
                keys=[keys.runs, keys.lease, keys.meta], args=[lease.run_id, lease.token, attempt, compact_json(usage)]
            )

    async def renew_lease(self, lease: RunLease) -> Renewal:
        keys = self.keys.session(lease.session_id)
        return Renewal(
            await self._renew_lease(
                keys=[keys.lease, keys.meta, *self._index_keys],
                args=[lease.token, self.settings.lease_ms, lease.run_id, lease.session_id],
            )
        )

    async def requeue_run(self, session_id: str, lease_token: str, past_seq: int | None = None) -> Requeue:
        """Hand the session's running run, held under `lease_token`, to another worker (shutdown);
        `past_seq`: after events Redis lost, the run goes on after this id (see requeue_run.lua)."""
        return (await self._requeue(session_id, lease_token, past_seq)).outcome

    async def look(self, session_id: str) -> Look:
        """A reaper's look at a session the leases index named: requeue its run if its lease ran
        out, push a job its outbox still holds, or find it renewed or with nothing to do."""
        return await self._requeue(session_id, "")

    async def _requeue(self, session_id: str, lease_token: str, past_seq: int | None = None) -> Look:
        keys, args = self._run_script_args(session_id)
        args += [lease_token, secrets.token_hex(4), "" if past_seq is None else past_seq]
        async with self._hooks(session_id):  # an expired question ends its run
            result = await self._requeue_run(keys=keys, args=args)
        look = Look(Requeue(result[0].decode()))
        if look.outcome is Requeue.RENEWED:
            return look._replace(lease_until=int(result[1]))
        if self._split and len(result) > 1 and result[1]:
            await self.leases.push(session_id, result[1])
        return look
