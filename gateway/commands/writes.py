"""The gateway's writes: a session made, a run queued, answered or cancelled, a session deleted or
forked. Each is one script (shared/store/scripts/runs.py), whose typed reply becomes a result or an error."""

import math
import secrets
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opentelemetry.trace import SpanKind

from tokentail.gateway.access.ids import steer_id_of
from tokentail.gateway.access.limits import queued_run_limit
from tokentail.gateway.live import first_delta
from tokentail.shared.connections.outage import is_outage, ride_out, unanswered
from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.features.admission import line_bound_in_queueing
from tokentail.shared.features.workers import process_id
from tokentail.shared.plumbing import run_spans, tracing
from tokentail.shared.plumbing.logs import current_context
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.client_indexes import point_chat
from tokentail.shared.store.keys import SessionKeys
from tokentail.shared.store.reads import ForkSource, active_run_id, compact_json, decode_run, read_run
from tokentail.shared.store.scripts.checks import JobArgs
from tokentail.shared.store.scripts.runs import (
    Answer,
    AnswerOutcome,
    AnswerReply,
    Cancel,
    CancelRun,
    IndexArgs,
    Queued,
    QueueOutcome,
    QueueReply,
    QueueRun,
    RunScope,
    Steered,
    SteerReply,
    SteerRun,
    encode_run,
)
from tokentail.shared.store.scripts.sessions import (
    CreateKeys,
    CreateSession,
    Creation,
    DeleteKeys,
    DeleteSession,
    ForkSession,
    MetaKey,
    WatchTaskPush,
    session_fields,
)
from tokentail.shared.store.writes import Writes
from tokentail.shared.vocabulary.errors import (
    InputNotPending,
    QueueingUnanswered,
    RunConflict,
    RunNotActive,
    RunNotFound,
    SessionExists,
    SessionExpired,
    SessionNotFound,
    SteerLimit,
    TooManySteers,
)
from tokentail.shared.vocabulary.events import CANCELLED_BY_REQUEST, RunCancelled
from tokentail.shared.vocabulary.records import MAX_PENDING_STEERS, Multitask, RunRecord, SessionRecord


@dataclass(frozen=True)
class ForkedRun:
    """The run a fork at an event inside it holds (gateway/commands/branching.py `fork_at`), as the fork's
    script takes it (`ForkSession`)."""

    run: RunRecord  # as it stood at the fork's event, with the overrides
    at: int
    go_on: bool  # it goes on from `at`, else it ends there
    steps: list[str]  # what it recorded by then: its steps hash, as name, value pairs
    pending: list[RunRecord]  # the runs in line behind it then, queued again
    children: list["ForkedChild"] = field(default_factory=list)  # its tree's runs going then, parents first

    @property
    def reason(self) -> str:
        return f"the fork holds the session's events up to {self.at} and goes on with none of its runs"


@dataclass(frozen=True)
class ForkedChild:
    """A run of the tree of a fork's run, going at the fork's event: it goes on (or ends) in the fork with
    that run, in its lane there (its record's `lane`, the fork's)."""

    run: RunRecord  # as it stood at the fork's event
    steps: list[str]  # what it recorded by then, as `ForkedRun.steps`


def _missing_or_gone(outcome: str, session_id: str) -> None:
    if outcome == "gone":
        raise SessionExpired(session_id)
    if outcome == "missing":
        raise SessionNotFound(session_id)


# A client that finds MAX_PENDING_STEERS waiting is told to try again after this many seconds: about
# one of the agent's boundaries, which take them in.
STEERS_RETRY_AFTER = 2


def steer_bounds(settings: Settings) -> tuple[int, int]:
    """The steers, and characters of steers, one run may take in (0: no bound)."""
    return settings.max_steers_per_run, settings.max_steer_chars_per_run


def too_many_steers(run_id: str) -> TooManySteers:
    return TooManySteers(
        f"{MAX_PENDING_STEERS} steers wait for run {run_id!r} already: send more once it has taken them in",
        STEERS_RETRY_AFTER,
    )


# How long queueing a run rides out a lost connection to Redis (shared/connections/outage.py) before the gateway
# answers 503: long enough for a cut connection (the next try goes at once) or a Sentinel failover,
# short enough for a client that waits. queue_run.lua answers a run it already has as queued before,
# so a try whose reply was lost is safe to send again: the gateway finds out itself whether its run
# was queued. A Redis that refuses the write (full, read-only) is answered at once: nothing was done.
QUEUE_OUTAGE_SECONDS = 5.0


async def _run_before_cancel(redis: AnyRedis, k: SessionKeys, run_id: str | None) -> RunRecord | None:
    """The run a cancel is about, as it is before it (traced: its spans may be written here)."""
    if not run_id:
        run_id = await active_run_id(redis, k)
    return await read_run(redis, k, run_id) if run_id else None


def check_waiting(reply: AnswerReply, session_id: str, run_id: str, input_id: str) -> None:
    """Raise as an answer to a question the run does not wait for (or to a run or session not there) is
    refused: answer.lua's, or expire_question.lua's, reply."""
    if reply.outcome is AnswerOutcome.NOT_WAITING:
        raise InputNotPending(f"run {run_id!r} is not waiting for an answer to {input_id!r}")
    if reply.outcome is AnswerOutcome.NO_RUN:
        raise RunNotFound(session_id, run_id)
    _missing_or_gone(reply.outcome, session_id)


class QueueResult(NamedTuple):
    queued: Queued
    run_id: str  # the run queued; STEERED: the active run, which its input steers
    seq: int | None  # of its `run.queued` (STEERED: of its `steer.accepted`; None if sent before)
    ended: tuple[bytes, ...] = ()  # traced: the runs an interrupt ended, as they were (QueueReply.ended)


def _not_queued(reply: QueueReply, session_id: str, settings: Settings, line_bound: int) -> QueueResult:
    """What a request that queued no run is answered: the steer it made instead, or why not."""
    if reply.outcome is QueueOutcome.STEERED:
        return QueueResult(Queued.STEERED, reply.active_run or "", reply.seq)
    if reply.outcome is QueueOutcome.LINE_FULL:
        raise queued_run_limit(line_bound)
    if reply.outcome is QueueOutcome.TOO_MANY_STEERS:
        raise too_many_steers(reply.active_run or "")
    if reply.outcome is QueueOutcome.STEER_LIMIT:
        raise SteerLimit(reply.active_run or "", *steer_bounds(settings))
    if reply.outcome is QueueOutcome.CONFLICT:
        raise RunConflict(session_id, reply.active_run or "")
    if reply.outcome is QueueOutcome.EXISTS:
        raise SessionExists(session_id)
    _missing_or_gone(reply.outcome, session_id)
    raise RuntimeError(f"queue_run.lua answered {reply!r}")


def _fork_script(
    scope: RunScope, index: IndexArgs, fork: SessionRecord, source: ForkSource, records: dict[str, str],
    kept: dict[str, str], going: ForkedRun | None, job_id: str,
) -> ForkSession:  # fmt: skip
    """`SessionWrites.fork`'s script."""
    events = [item for event in source.events[: fork.last_event_id] for item in event]  # seq, type, data, ts
    return ForkSession(
        scope.run_keys(fork.session_id),
        scope.args(fork.session_id),
        index,
        session_fields(fork),
        [item for run in fork.runs for item in (run.run_id, records[run.run_id])],
        [item for pair in kept.items() for item in pair],
        events,
        going.run.run_id if going is not None else "",
        fork.last_event_id,
        "1" if going is not None and going.go_on else "0",
        job_id,
        going.reason if going is not None else "",
        going.steps if going is not None else [],
        [run.run_id for run in going.pending] if going is not None else [],
        [item for child in (going.children if going is not None else []) for item in _lane_args(scope, child)],
    )


def _lane_args(scope: RunScope, child: ForkedChild) -> tuple[str, ...]:
    """A child's part of `ForkSession.children`: its id, its lane's id, meta and steps keys, its job's id and
    the steps it goes on with (JSON)."""
    lane = child.run.lane
    assert lane is not None, f"child run {child.run.run_id} has no lane"
    keys = scope.run_keys(lane)
    job_id = f"{child.run.run_id}.{secrets.token_hex(4)}"
    return (child.run.run_id, lane, keys.meta, keys.steps, job_id, compact_json(child.steps))


class SessionWrites(Writes):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._line_bound = line_bound_in_queueing(self.settings)  # (0: the gateway checked it before)

    async def create_session(self, session: SessionRecord) -> bool:
        """Create a session with no run yet; like a finished one, it expires if left unused. False if
        it exists already (a client-chosen chat id used before)."""
        keys = self.keys.session(session.session_id)
        settings = self.settings
        create = CreateSession(
            CreateKeys(keys.meta, keys.gone),
            settings.session_ttl_seconds,
            settings.tombstone_ttl_seconds,
            session.tenant,
            session_fields(session),
        )
        made = await self.run(create)
        if made is Creation.GONE:
            raise SessionExpired(session.session_id)
        return made is Creation.MADE

    async def watch_task_push(self, session_id: str) -> bool:
        """Keep the events the session's webhooks report for its tasks' push configs too
        (shared/features/a2a_push.py); False if the session is gone."""
        return await self.run(WatchTaskPush(MetaKey(self.keys.session(session_id).meta)))

    async def queue_run(
        self,
        session_id: str,
        run: RunRecord,
        *,
        multitask: Multitask = "reject",
        create: SessionRecord | None = None,
        if_missing: bool = False,
        task_push: bool = False,
    ) -> QueueResult:
        """Record `run` (setting its `queued_seq`), append `run.queued`, queue its job and list it in the
        runs index; with `create`, make the session first (`if_missing`: only if it does not exist yet);
        with `task_push`, mark the session as `watch_task_push` does, in the same step. With a run already
        active, `multitask` decides (queue_run.lua; `steer`: no run is recorded, its input steers the
        active run). Traced, the run carries a producer span's context that every attempt's spans join."""
        if run.received_at is None:
            run.received_at = first_delta.RECEIVED_AT.get()  # the time to first delta starts there
        queue = (session_id, run, multitask, create, if_missing, task_push)
        if not tracing.ON:
            return await self._queue_run(*queue)
        attributes = {
            **run_spans.queue_message(self.keys.queue, run.run_id, "send"),
            "gen_ai.conversation.id": session_id,
        }
        with tracing.tracer().start_as_current_span(
            f"send {self.keys.queue}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            run.trace = tracing.carrier()
            reply = await self._queue_run(*queue)
            span.set_attribute("tokentail.run.queued", reply.queued.value)  # started, pending, or again
        # The runs it superseded ended here, with no worker: so are their spans written (shared/plumbing/run_spans.py).
        for before in map(decode_run, reply.ended):
            ended = RunCancelled(run_id=before.run_id, reason=f"superseded by run {run.run_id}")
            run_spans.write_unheld_end(before, session_id, ended, "interrupt", self.keys.queue)
        return reply

    async def _queue_run(
        self,
        session_id: str,
        run: RunRecord,
        multitask: Multitask,
        create: SessionRecord | None,
        if_missing: bool,
        task_push: bool,
    ) -> QueueResult:
        index = self.run_index.with_queueing(session_id, run.run_id)
        queue = QueueRun(
            self.scope.run_keys(session_id),
            self.scope.args(session_id),
            index,
            run.run_id,
            encode_run(run),
            multitask,
            compact_json({"run_id": run.run_id, "input": run.input}),
            "0" if create is None else "2" if if_missing else "1",
            self.keys.cancel_channel,
            "1" if tracing.ON else "0",
            "1" if task_push else "0",
            steer_id_of(run.run_id),
            self.keys.steer_channel,
            len(run.input or ""),
            *steer_bounds(self.settings),
            create.tenant if create else "",
            self._line_bound,
            session_fields(create) if create else [],
        )
        lost_a_reply = False

        async def queue_once() -> QueueReply:
            nonlocal lost_a_reply
            try:
                return await self.run(queue)
            except Exception as exc:
                lost_a_reply = lost_a_reply or unanswered(exc)
                raise

        what = f"queueing run {run.run_id}"
        try:
            reply = await ride_out(queue_once, what, within=QUEUE_OUTAGE_SECONDS, retried=unanswered)
        except Exception as exc:
            if lost_a_reply and is_outage(exc):  # a try may have queued it: the client learns what to look up
                raise QueueingUnanswered(session_id, run.run_id) from exc
            raise
        if reply.queued is not None:
            run.queued_seq = reply.seq
            if not index.all_runs:  # (listed by the script where it could)
                await self.run_index.add(create.tenant if create else None, session_id, run.run_id)
            return QueueResult(reply.queued, run.run_id, reply.seq, reply.ended)
        return _not_queued(reply, session_id, self.settings, self._line_bound)

    async def fork(
        self, fork: SessionRecord, source: ForkSource, records: dict[str, str], kept: dict[str, str],
        going: ForkedRun | None, job_id: str,
    ) -> bool:  # fmt: skip
        """Make session `fork` (its record: the source's, with its own id, time and lineage) from `source`,
        read just before (`SessionStore.fork_source`): its events up to `fork`'s last, the runs `fork` lists
        as `records` holds them (by run id, as stored) with their `kept` steps, and the run `going` then,
        which goes on (its job `job_id`) or ends there (fork_session.lua). False if it exists already."""
        going_on = going is not None and going.go_on
        run_id = going.run.run_id if going is not None else ""
        index = self.run_index.with_queueing(fork.session_id, run_id) if going_on else IndexArgs.none()
        script = _fork_script(self.scope, index, fork, source, records, kept, going, job_id)
        made = await self.run(script)
        if made is Creation.MADE and going_on and not index.all_runs:
            await self.run_index.add(fork.tenant, fork.session_id, run_id)  # (listed by the script where it could)
        if made is Creation.MADE and going is not None:  # (the console's run page lists it)
            await self.run_index.add_fork(source.session.session_id, run_id, fork.session_id, going.at)
        if made is Creation.GONE:
            raise SessionExpired(fork.session_id)
        return made is Creation.MADE

    async def point_chat(self, chat_session_id: str, branch: str) -> None:
        """From now on the chat of session `chat_session_id` goes on in session `branch` (a fork),
        for as long as the chat is used (client_indexes.py `chat_branch` keeps it)."""
        await point_chat(self.redis, self.keys, self.settings, chat_session_id, branch)

    async def answer(self, session_id: str, run: RunRecord, input_id: str, answer: Any) -> int:
        """Answer a question `run` waits for (see answer.lua), which queues it again if it waits for
        no other; the seq of `input.received`."""
        lane = run.lane or session_id  # a child's question is its lane's
        reply = await self.run(
            Answer(
                self.scope.run_keys(lane),
                self.scope.args(lane),
                run.run_id,
                input_id,
                compact_json(answer),
                secrets.token_hex(4),
                current_context().get("caller", ""),
                process_id(),
            )
        )
        check_waiting(reply, session_id, run.run_id, input_id)
        assert reply.seq is not None
        return reply.seq

    async def steer(self, session_id: str, steer_id: str, text: str, run_id: str | None = None) -> SteerReply:
        """Steer the session's active run with `text` (see steer.lua), or only run `run_id` if it is
        the active one; `RunNotActive` otherwise, `TooManySteers` when as many wait as may, `SteerLimit`
        when the run took in as many as it may. A steer id kept before answers as it did (its run)."""
        scope, bounds = self.scope, steer_bounds(self.settings)
        steer = (steer_id, text, len(text), *bounds, run_id or "", self.keys.steer_channel)
        lane = await self.tree.lane(session_id, run_id)  # a child's own, if it names one
        reply = await self.run(SteerRun(scope.run_keys(lane), scope.args(lane), *steer))
        _missing_or_gone(reply.outcome, session_id)
        if reply.outcome is Steered.NOT_ACTIVE:
            raise RunNotActive(session_id, run_id, reply.run_id)
        if reply.outcome is Steered.TOO_MANY:
            raise too_many_steers(reply.run_id or "")
        if reply.outcome is Steered.LIMIT:
            raise SteerLimit(reply.run_id or "", *bounds)
        return reply

    async def cancel_run(
        self,
        session_id: str,
        run_id: str | None = None,
        segment: int | None = None,
        ended_at_question: bool = False,
        rollback: bool = False,
    ) -> tuple[Cancel, str | None]:
        """Cancel the active run, or run `run_id` (a child's too) only while active (cancel_run.lua), and
        its descendants (docs/subagents.md); what became of it, and its id (`RunNotFound`: not the
        session's). A Responses API response adds its `segment` (RunRecord.segment): only while the run
        is in it; `ended_at_question`: not while it waits for the answer to the question that ended it;
        `rollback`: the run is also left out of the conversation (RunRecord.rolled_back)."""
        if segment is not None and run_id is None:
            raise ValueError("a segment is a run's: name the run")
        before = await _run_before_cancel(self.redis, self.keys.session(session_id), run_id) if tracing.ON else None
        lane = await self.tree.lane(session_id, run_id)
        reply = await self.run(
            CancelRun(
                self.scope.run_keys(lane),
                self.scope.args(lane),
                self.keys.cancel_channel,
                CANCELLED_BY_REQUEST,
                run_id or "",
                "" if segment is None else str(segment),
                "1" if ended_at_question else "0",
                "1" if rollback else "0",
            )
        )
        _missing_or_gone(reply.outcome, session_id)
        if reply.outcome is Cancel.NO_RUN:
            raise RunNotFound(session_id, run_id or "")
        if reply.run_id and reply.outcome in (Cancel.CANCELLED, Cancel.SIGNALLED):
            await self.tree.cancel_below(session_id, reply.run_id, CANCELLED_BY_REQUEST)
        if before is not None and reply.outcome is Cancel.CANCELLED and before.run_id == reply.run_id:
            # No worker held it, so its end is recorded here, and so are its spans (shared/plumbing/run_spans.py).
            ended = RunCancelled(run_id=before.run_id, reason=CANCELLED_BY_REQUEST)
            run_spans.write_unheld_end(before, session_id, ended, "cancel", self.keys.queue)
        return reply.outcome, reply.run_id

    async def delete_session(self, session: SessionRecord) -> None:
        """Delete the session (see delete_session.lua): its run's worker is fenced, its followers end."""
        k, keys = self.keys.session(session.session_id), self.keys
        beside = (keys.task_push(session.session_id), keys.lease_checks, keys.archive_checks, keys.queue)
        own = (k.meta, k.runs, k.events, k.lease, k.pending, k.gone, k.steps, k.steers, k.steered, k.kept_steps)
        deleted = DeleteKeys(*own, *beside)
        traced = "1" if tracing.ON else "0"
        lanes = await self.tree.lanes_to_delete(session.session_id, session.active_run_id)
        # Its id is not made again before a worker still running its run learnt of the delete (at its
        # next renewal, a third of a lease away): the per-token path reads no lease (append_at.lua), and
        # a stalled worker's append would land in a new session's stream of the same id.
        tombstone = max(self.settings.tombstone_ttl_seconds, math.ceil(2 * self.settings.lease_ms / 1000))
        ended = await self.run(
            DeleteSession(deleted, JobArgs.of(keys), session.tenant, tombstone, session.session_id, traced)
        )
        await self.tree.drop_lanes(lanes)
        # Its runs ended here: a worker running one is fenced and ends nothing (shared/plumbing/run_spans.py).
        for before in map(decode_run, ended):
            cancelled = RunCancelled(run_id=before.run_id, reason="session deleted")
            run_spans.write_unheld_end(before, session.session_id, cancelled, "delete", self.keys.queue)
