"""A worker's writes on the runs it holds: claim a run under a lease, then append, ask, record,
renew and hand over through the `RunLease` it was given, each one script (shared/store/scripts/runs.py).

Every append also tells Redis the last seq the worker was told it wrote, so that events Redis lost
are appended again under their ids first (worker/writes/lost_writes.py). Every write a run depends
on (its start, appends, questions, steps, usage) rides out a Redis outage (shared/connections/outage.py): each
script recognises a try of its own whose reply was lost, so sending it again changes nothing twice.
"""

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

from tokentail.shared.connections.outage import ride_out
from tokentail.shared.connections.round_trips import slot_of
from tokentail.shared.features.webhook_messages import HOOKED_EVENTS
from tokentail.shared.features.workers import process_id
from tokentail.shared.store.keys import session_of
from tokentail.shared.store.reads import (
    add_steps,
    compact_json,
    decode_run,
    runs_in_order,
    steer_texts,
    steers_waiting,
    with_output,
    with_steer_texts,
    without_steer_texts,
)
from tokentail.shared.store.scripts.children import AwaitChildren, Awaited, Spawn, SpawnKeys, SpawnReply
from tokentail.shared.store.scripts.runs import (
    Append,
    AppendEvents,
    AppendKeys,
    AppendShared,
    AppliedSteers,
    ApplySteers,
    Ask,
    Asked,
    Look,
    Recorded,
    RecordStep,
    RecordUsage,
    Renewal,
    RenewKeys,
    RenewLease,
    Requeue,
    RequeueRun,
    StartRun,
    StartVerdict,
    StepKeys,
    UsageKeys,
    encode_run,
)
from tokentail.shared.store.writes import Writes
from tokentail.shared.vocabulary.events import Ending, RunCompleted, RunFailed, RunSpawned, event_type_of
from tokentail.shared.vocabulary.records import MAX_RUN_STEPS_BYTES, Question, RunRecord
from tokentail.worker.agent_errors import StepTooLarge
from tokentail.worker.writes.lost_writes import Appended, WriteJournal, through_lost_writes
from tokentail.worker.writes.steer_inbox import SteerInbox

logger = logging.getLogger(__name__)
T = TypeVar("T")
Landed = Callable[[int | BaseException], None]  # told an append's last seq, or its error
Takeover = int | Literal["restart"]  # how a taken-over run goes: on, keeping its events up to an id; or over


@dataclass(frozen=True, slots=True)
class RunLease:
    """A run as the one worker that started it holds it: every write it makes on the run is fenced
    by `token`, and fails with `LeaseLost` once another worker holds the run or it ended."""

    runs: "RunWrites"
    session_id: str
    run_id: str
    token: str
    journal: WriteJournal = field(default_factory=WriteJournal, compare=False, repr=False)
    inbox: SteerInbox = field(default_factory=SteerInbox, compare=False, repr=False)
    # The keys of its per-token appends, and their Redis Cluster slot, worked out once.
    append_keys: AppendKeys = field(init=False, compare=False, repr=False)
    slot: int = field(init=False, compare=False, repr=False)

    @property
    def session(self) -> str:
        """The session the run is of, as logs name it (`session_id` is a child's lane)."""
        return session_of(self.session_id)

    def __post_init__(self) -> None:
        keys = self.runs.keys.session(self.session_id)
        object.__setattr__(self, "append_keys", AppendKeys(keys.meta, keys.events, keys.lease))
        object.__setattr__(self, "slot", slot_of(keys.events))

    async def append(
        self, events: Sequence[tuple[str, str]], append_id: str | None = None, ending: Ending | None = None
    ) -> int:
        """Append `(type, data_json)` events, then the run's terminal event if it `ending`; returns the
        last seq. Sending it again (after a lost reply, with the same `append_id` for an `ending`)
        appends nothing twice. The per-token path's appends go with the other runs' instead
        (worker/writes/appends.py), and come here when Redis was out of reach or lost what the run wrote."""
        append_id = append_id or secrets.token_hex(8)
        seq = await self._ridden("append", lambda: self.runs.append(self, events, append_id, ending))
        if ending is None:
            self.journal.wrote(events, seq)
        return seq

    async def append_as_written(self, append: Appended) -> int:
        """An append Redis lost, again as it was (worker/writes/lost_writes.py)."""
        return await self.runs.append(self, append.events, "", None, append.first - 1)

    async def renew(self) -> Renewal:
        return await self.runs.renew_lease(self)

    async def ask(self, asked: list[Question], questions: list[Question]) -> Asked:
        """Record `questions`, asked at once, the last of the run's `asked`, and give the run up until
        each has its answer."""
        return await self._ridden("question", lambda: self.runs.ask(self, asked, questions))

    async def spawn(self, child: RunRecord, spawned: RunSpawned, most: int, most_concurrent: int) -> SpawnReply:
        """Start the child run `child` (spawn.lua): its record, its `run.spawned`, its job."""
        reply = await self._ridden("spawn", lambda: self.runs.spawn(self, child, spawned, most, most_concurrent))
        if reply.seq is not None:
            self.journal.written = max(self.journal.written, reply.seq)
        return reply

    async def await_children(self, children: list[str], wake_on_first: bool) -> Awaited:
        """Give the run up until `children` ended (or the first of them, `wake_on_first`): await_children.lua."""
        return await self._ridden("wait", lambda: self.runs.await_children(self, children, wake_on_first))

    async def apply_steers(self, step_key: str, output_at: int) -> AppliedSteers:
        """Take in the steers waiting for the run, recorded as its step `step_key`, after `output_at`
        characters of its answer (apply_steers.lua)."""
        self.inbox.sent.clear()  # what is sent from now on is for the next boundary
        applied = await self._ridden("steers", lambda: self.runs.apply_steers(self, step_key, output_at))
        if applied.seq is not None:
            self.journal.written = max(self.journal.written, applied.seq)
        return applied

    async def steers_wait(self) -> bool:
        """Whether steers wait for the run now: asked where `inbox.sent` would cut the model's text,
        since it may say so late (a renewal's reply computed before the last steers were taken in,
        a notification delivered after): a cut with nothing to take in would end the answer there.
        Redis unwell: no cut (the turn's end looks for steers again, and rides the outage out)."""
        self.inbox.sent.clear()  # (first: a steer sent during the read sets it again)
        try:
            waiting = await self.runs.steers_waiting(self)
        except Exception:
            return False
        if waiting:
            self.inbox.sent.set()
        return waiting

    async def hand_over(self, past_seq: int | None = None) -> Requeue:
        """Give the run to another worker (this one is stopping); `past_seq`: after events Redis
        lost, the run goes on after this id (see requeue_run.lua)."""
        return (await self.runs.requeue(self.session_id, self.token, past_seq)).outcome

    async def record_step(self, key: str, value_json: str) -> None:
        """Keep the result of step `key` in the run's record, for a worker that continues the run."""
        await ride_out(lambda: self.runs.record_step(self, key, value_json), f"step of run {self.run_id}")

    async def record_usage(self, attempt: int, usage: dict[str, int]) -> None:
        """Keep what attempt `attempt` has cost so far in the run's record (record_usage.lua)."""
        await ride_out(lambda: self.runs.record_usage(self, attempt, usage), f"usage of run {self.run_id}")

    async def _ridden(self, what: str, write: Callable[[], Awaitable[T]]) -> T:
        """`write()`, through a Redis outage and past events Redis lost."""
        return await ride_out(lambda: through_lost_writes(self, write), f"{what} of run {self.run_id}")


_appending: "set[asyncio.Future[int]]" = set()  # appends in tasks of their own, until they land


class Started(NamedTuple):
    lease: RunLease
    run: RunRecord
    verdict: StartVerdict
    earlier: list[RunRecord]  # the session's other runs that completed, in order: the conversation so far
    children: list[RunRecord]  # the run's children, in the order spawned (docs/subagents.md)


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


def _flat(events: Sequence[tuple[str, str]]) -> list[str]:
    return [item for event in events for item in event]


class RunWrites(Writes):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._append_shared = AppendShared(self.settings.stream_maxlen)

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
        a function decides, called only for a takeover (worker/run/recovery/takeover.py)."""
        lease = RunLease(self, session_id, run_id, token or secrets.token_hex(16))
        settings = self.settings
        start = StartRun(
            self.scope.run_keys(session_id),
            self.scope.args(session_id),
            run_id,
            lease.token,
            settings.lease_ms,
            settings.max_attempts,
            job_id,
            "" if callable(takeover) else takeover,
            process_id(),
        )
        what = f"start of run {run_id}"
        claim = await ride_out(lambda: self.run(start), what)
        if claim.decide and callable(takeover):  # nothing changed: decide, and claim it again
            decided = dataclasses.replace(start, keep_until=await takeover())
            claim = await ride_out(lambda: self.run(decided), what)
        if not claim.claimed:
            return None
        run = decode_run(claim.run_json)
        add_steps(run, claim.steps)
        lease.journal.written = claim.seq  # its appends go on after the event that started it
        if claim.steered:
            lease.inbox.sent.set()
        runs = runs_in_order(claim.runs)
        children = [other for other in runs if other.parent_run_id == run_id]
        # A child is given its input alone; a session's run, the session's own runs before it.
        top = run.parent_run_id is None
        earlier = [
            other
            for other in runs
            if top and other.status == "completed" and other.run_id != run_id and other.parent_run_id is None
        ]
        if without_steer_texts(earlier):  # the agent's history shows the steers they took in
            keys = self.keys.session(lease.session_id)
            steered = await ride_out(lambda: steer_texts(self.redis, keys), what)
            with_steer_texts(earlier, steered)
        return Started(lease, run, claim.verdict, earlier, children)

    async def append(
        self,
        lease: RunLease,
        events: Sequence[tuple[str, str]],
        append_id: str,
        ending: Ending | None = None,
        expect: int | None = None,
    ) -> int:
        """One try of `RunLease.append` (WritesLost if Redis lost events the run wrote before);
        `expect`: the last seq Redis must have, by default the last the run was told it wrote."""
        expect = lease.journal.written if expect is None else expect
        if ending is None and not any(event_type in HOOKED_EVENTS for event_type, _ in events):
            plain = AppendEvents(
                self._append_shared, lease.append_keys, lease.run_id, lease.token, expect, _flat(events)
            )
            return await self.run(plain)
        outcome = told = ""
        if ending is not None:
            stored, outcome = stored_ending(ending)
            events = [*events, (event_type_of(ending), stored)]
            if isinstance(ending, RunCompleted):  # the hubs are told it with its output: they read nothing
                told = with_output(stored.encode(), ending.output).decode()
        keys, args = self.scope.run_keys(lease.session_id), self.scope.args(lease.session_id)
        run_id, token, failure = lease.run_id, lease.token, lease.inbox.failure if ending is not None else ""
        append = Append(keys, args, run_id, token, append_id, outcome, failure, told, expect, _flat(events))
        return (await self.run(append)).seq

    async def apply_steers(self, lease: RunLease, step_key: str, output_at: int) -> AppliedSteers:
        """One try of `RunLease.apply_steers`."""
        keys, args = self.scope.run_keys(lease.session_id), self.scope.args(lease.session_id)
        applying = ApplySteers(keys, args, lease.run_id, lease.token, step_key, output_at, lease.journal.written)
        return await self.run(applying)

    async def steers_waiting(self, lease: RunLease) -> bool:
        return await steers_waiting(self.redis, self.keys.session(lease.session_id))

    async def ask(self, lease: RunLease, asked: list[Question], questions: list[Question]) -> Asked:
        """One try of `RunLease.ask`."""
        last = len(questions) - 1
        asking = await self.run(
            Ask(
                self.scope.run_keys(lease.session_id),
                self.scope.args(lease.session_id),
                lease.run_id,
                lease.token,
                compact_json([q.model_dump(mode="json", by_alias=True) for q in asked]),
                lease.journal.written,
                [q.event(lease.run_id, more=last - i).model_dump_json(by_alias=True) for i, q in enumerate(questions)],
                [q.input_id for q in questions],
                ["" if q.expires_at is None else str(int(q.expires_at * 1000)) for q in questions],
                [compact_json(q.default) if q.on_expiry == "default" else "" for q in questions],
            )
        )
        return asking.outcome

    async def spawn(
        self, lease: RunLease, child: RunRecord, spawned: RunSpawned, most: int, most_concurrent: int
    ) -> SpawnReply:
        """One try of `RunLease.spawn`."""
        keys, lane = self.keys.session(lease.session_id), child.lane or ""
        spawn_keys = SpawnKeys(
            keys.meta,
            keys.runs,
            keys.events,
            keys.lease,
            self.keys.session(lane).meta,
            keys.root,
            self.keys.queue,
            self.keys.lease_checks,
        )
        return await self.run(
            Spawn(
                spawn_keys,
                self.scope.args(lane),
                lease.run_id,
                lease.token,
                lease.journal.written,
                child.run_id,
                encode_run(child),
                spawned.model_dump_json(),
                most,
                most_concurrent,
            )
        )

    async def await_children(self, lease: RunLease, children: list[str], wake_on_first: bool) -> Awaited:
        """One try of `RunLease.await_children`."""
        waiting = AwaitChildren(
            self.scope.run_keys(lease.session_id),
            self.scope.args(lease.session_id),
            lease.run_id,
            lease.token,
            lease.journal.written,
            "1" if wake_on_first else "0",
            secrets.token_hex(4),
            children,
        )
        return (await self.run(waiting)).outcome

    async def record_step(self, lease: RunLease, key: str, value_json: str) -> None:
        keys = self.keys.session(lease.session_id)
        step_keys = StepKeys(keys.steps, keys.lease, keys.meta)
        written = lease.journal.written
        step = RecordStep(step_keys, lease.run_id, lease.token, key, value_json, MAX_RUN_STEPS_BYTES, written)
        recorded = await self.run(step)
        if recorded.outcome is Recorded.TOO_LARGE:  # nothing was written
            raise StepTooLarge(
                f"step {key!r}: the run's recorded steps would total {recorded.total} bytes, over"
                f" {MAX_RUN_STEPS_BYTES} (MAX_RUN_STEPS_BYTES): record less (a key to a result kept elsewhere)"
            )

    async def record_usage(self, lease: RunLease, attempt: int, usage: dict[str, int]) -> None:
        keys = self.keys.session(lease.session_id)
        usage_keys = UsageKeys(keys.runs, keys.lease, keys.meta)
        usage_json = compact_json(usage)
        await self.run(RecordUsage(usage_keys, lease.run_id, lease.token, attempt, usage_json, lease.journal.written))

    async def renew_lease(self, lease: RunLease) -> Renewal:
        keys = self.keys.session(lease.session_id)
        renew_keys = RenewKeys(keys.lease, keys.meta, keys.steers, self.keys.lease_checks)
        return await self.run(
            RenewLease(renew_keys, lease.token, self.settings.lease_ms, lease.run_id, lease.session_id)
        )

    async def look(self, session_id: str) -> Look:
        """A reaper's look at a session the leases index named: requeue its run if its lease ran
        out, push a job its outbox still holds, or find it renewed or with nothing to do."""
        return await self.requeue(session_id, "")

    async def requeue(self, session_id: str, lease_token: str, past_seq: int | None = None) -> Look:
        """Hand the session's running run, held under `lease_token` (or none: a reaper's look), to
        another worker; `past_seq`: see `RunLease.hand_over`."""
        keys, args = self.scope.run_keys(session_id), self.scope.args(session_id)
        past = "" if past_seq is None else past_seq
        return await self.run(RequeueRun(keys, args, lease_token, secrets.token_hex(4), past))


def call_when_landed(append: "asyncio.Future[int]", landed: Landed) -> None:
    """Tell `landed` what became of `append` (a task) once it is done."""
    _appending.add(append)  # held: the loop keeps tasks weakly
    append.add_done_callback(_appending.discard)
    append.add_done_callback(lambda done: landed(outcome(done)))


def outcome(done: "asyncio.Future[Any]") -> Any:
    """A future's result, or its error (a cancel as CancelledError)."""
    if done.cancelled():
        return asyncio.CancelledError()
    return done.exception() or done.result()
