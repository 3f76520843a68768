"""A run's children (docs/subagents.md): `ctx.spawn` starts a run of another agent in the session, and
the parent waits for it without a worker.

A child is a run of its own (its record, lease, attempts, continuation, questions and steps, in a lane
of the session: shared/store/keys.py), whose events stream into the session's one stream. Its id comes
from its parent and the call (`child_run_id`), so a parent that runs its agent again (taken over, or
going on after its children ended) finds the child it started, ended or still going, and never starts
it twice: what the session's records say of its children is what this attempt starts from (`known`).
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, Protocol

from tokentail.shared.features.admission import FollowerSlot
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import lane_of, session_of
from tokentail.shared.store.reads import follow_stream, read_run, stream_from
from tokentail.shared.store.scripts.children import Spawned
from tokentail.shared.store.tenant_counts import count_spawn, uncount_spawn
from tokentail.shared.vocabulary.catalog import check_agent
from tokentail.shared.vocabulary.events import (
    TERMINAL_EVENTS,
    CustomData,
    Ending,
    ErrorInfo,
    EventType,
    MessageDelta,
    ReasoningDelta,
    RunCancelled,
    RunCompleted,
    RunContinued,
    RunFailed,
    RunRetrying,
    RunSpawned,
    RunStarted,
    SpawnCause,
    Status,
    ToolStarted,
)
from tokentail.shared.vocabulary.records import RunRecord, child_run_id
from tokentail.shared.vocabulary.run_log import RunLog
from tokentail.shared.vocabulary.run_tree import Subtree
from tokentail.worker.agent_errors import ChildFailed, OutputTooLarge, SpawnRefused
from tokentail.worker.run.recovery.replay import Replay
from tokentail.worker.writes.run_writes import RunLease
from tokentail.worker.writes.writer import EventWriter, error_text, tool_end

logger = logging.getLogger(__name__)

FULL_LOOK_SECONDS = 0.5  # how often a followed spawn with no room yet tries again
FOLLOW_BATCH = 256  # events a follower reads at once
FOLLOW_BLOCK_MS = 1000  # how long one read waits for more


@dataclass(frozen=True, slots=True)
class ChildResult:
    """What a child that completed answered (`output`), and what it cost (`usage`)."""

    run_id: str
    agent: str
    output: str
    usage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChildEvent:
    """One of a child's events (or its descendants'), as a parent that follows it sees it (`spawn_stream`)."""

    seq: int  # its id in the session's stream
    type: str
    data: dict[str, Any]


class ToolOpener(Protocol):
    """RunContext.tool: the parent's tool call a child is shown in."""

    def __call__(
        self, name: str, arguments: dict[str, Any], call_id: str | None = None
    ) -> AbstractAsyncContextManager[Any]: ...


class Waits(Protocol):
    """What an attempt waits for at once (worker/run/context.py): a child going (its id), or a spawn that
    could not start yet (None); joining raises `WaitingForChildren` with all of them."""

    async def join(self, item: str | None) -> NoReturn: ...


class Children:
    """The children of one attempt's run: started here, or found in the session's records."""

    def __init__(
        self,
        lease: RunLease,
        run: RunRecord,
        known: list[RunRecord],
        writer: EventWriter,
        settings: Settings,
        tenant: str,
        slot: FollowerSlot | None = None,
    ) -> None:
        """`slot`: the run's slot in its tenant's caps, lent while it follows a child (`stream`)."""
        self._lease = lease
        self._tenant = tenant
        self._slot = slot
        self._run = run
        self._known = {child.run_id: child for child in known}
        self._writer = writer
        self._settings = settings
        self._spawns = 0  # `spawn` calls so far in this attempt: the id of a call that names none
        self.waits: Waits | None = None  # set by the run's context
        self._starting = 0  # spawns on their way to Redis: their children join the wait of those started at once
        self.settled = asyncio.Event()  # set while no spawn of this attempt is on its way to Redis
        self.settled.set()

    @classmethod
    def none(cls) -> "Children":
        """Of a context made outside a worker (a test's): a spawn fails."""
        return cls(None, None, [], None, None, "")  # type: ignore[arg-type]

    def call_id(self, call_id: str | None) -> str:
        index, self._spawns = self._spawns, self._spawns + 1
        return call_id or f"spawn_{index}"

    async def result(self, agent: str, text: str, call_id: str, name: str | None) -> ChildResult:
        """The result of the child of call `call_id` (ChildFailed if it did not complete), started here
        if the session has no such child yet; while it is going, the run waits for it (`waits`)."""
        if self._run is None or self.waits is None:
            raise RuntimeError("this run cannot start children (it runs outside a worker)")
        child_id = child_run_id(self._run.run_id, call_id)
        child = self._known.get(child_id)
        if child is None:
            self._starting += 1
            self.settled.clear()
            try:
                child = await self._start(child_id, agent, text, call_id, name)
            finally:
                self._starting -= 1
                if self._starting == 0:
                    self.settled.set()
            if child is None:
                await self.waits.join(None)
        if child.active:
            await self.waits.join(child_id)
        if child.status != "completed":
            raise ChildFailed(child)
        return ChildResult(child.run_id, child.agent or agent, child.output or "", child.usage or {})

    async def stream(
        self, tool: ToolOpener, agent: str, text: str, call_id: str, name: str | None
    ) -> AsyncIterator[ChildEvent]:
        """The child of call `call_id` (started here if the session has none), followed: its events and
        its descendants', from its start to its end, then its result as the tool call's. This run holds
        its worker meanwhile; taken over, it follows the same child again from its start."""
        if self._run is None:
            raise RuntimeError("this run cannot start children (it runs outside a worker)")
        child_id = child_run_id(self._run.run_id, call_id)
        async with tool(name or agent, {"input": text}, call_id) as call:
            async with self._following():
                child = self._known.get(child_id)
                while child is None:  # as many children going as may: one of them ends before it starts
                    child = await self._start(child_id, agent, text, call_id, name)
                    if child is None:
                        await asyncio.sleep(FULL_LOOK_SECONDS)
                async for event in self._follow(child):
                    yield event
            runs = self._lease.runs
            ended = await read_run(runs.redis, runs.keys.session(self._lease.session_id), child_id)
            assert ended is not None, f"child run {child_id} has no record"
            if ended.status != "completed":
                raise ChildFailed(ended)
            call.result = ended.output

    @asynccontextmanager
    async def _following(self) -> AsyncIterator[None]:
        """While this run follows a child, its tenant's slot is lent (the child waits in the tenant's
        line: at a cap of 1, it would wait on its own parent)."""
        if self._slot is None:
            yield
            return
        await self._slot.follow()
        try:
            yield
        finally:
            await self._slot.followed()

    async def _follow(self, child: RunRecord) -> AsyncIterator[ChildEvent]:
        """The child's events and its descendants', after its `run.spawned`, through its terminal one."""
        runs = self._lease.runs
        keys = runs.keys.session(self._lease.session_id)
        after = f"{child.queued_seq}-1"  # (entries are `<seq>-0`, or `<seq>-1` after a fence)
        tree = Subtree(child.run_id)  # its children are spawned after it: each learned from its run.spawned
        while True:
            for entry_id, fields in await follow_stream(runs.redis, keys, after, FOLLOW_BATCH, FOLLOW_BLOCK_MS):
                after = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                event_type, data = fields[b"type"].decode(), json.loads(fields[b"data"])
                if event_type == EventType.RUN_SPAWNED:
                    tree.spawned(data["run_id"], data["parent_run_id"])
                if data.get("run_id") not in tree:
                    continue
                yield ChildEvent(int(after.split("-")[0]), event_type, data)
                if event_type in TERMINAL_EVENTS and data["run_id"] == child.run_id:
                    return

    async def _start(self, child_id: str, agent: str, text: str, call_id: str, name: str | None) -> RunRecord | None:
        """Start the child (None: the run has as many going as it may, and waits for one to end)."""
        settings, run, lease = self._settings, self._run, self._lease
        try:
            check_agent(agent, set(settings.agents))
        except ValueError as unknown:  # refused as it is made, rather than started to fail
            raise SpawnRefused("unknown_agent", 422, str(unknown)) from None
        if run.depth + 1 > settings.max_child_depth:
            raise SpawnRefused(
                "child_depth_exceeded",
                422,
                f"a tree of runs is at most {settings.max_child_depth} deep (TOKENTAIL_MAX_CHILD_DEPTH)",
            )
        counted = await self._count_spawn()
        lane = lane_of(lease.session_id, child_id)
        child = RunRecord(
            run_id=child_id,
            input=text,
            agent=agent,
            user=run.user,
            parent_run_id=run.run_id,
            depth=run.depth + 1,
            call_id=call_id,
            name=name,
            lane=lane,
            trace=run.trace,
        )
        spawned = RunSpawned(
            run_id=child_id,
            parent_run_id=run.run_id,
            agent=agent,
            name=name or agent,
            input=text,
            cause=SpawnCause(call_id=call_id),
        )
        await self._writer.flush()  # what the parent streamed (its tool call) comes before the child
        reply = await lease.spawn(child, spawned, settings.max_children_per_run, settings.max_concurrent_children)
        if reply.outcome is not Spawned.STARTED and counted is not None:
            await self._uncount(counted)  # a child counts once, as it starts, never a spawn that waits for room
        match reply.outcome:
            case Spawned.STARTED:
                child.queued_seq = reply.seq
                self._known[child_id] = child
                return child
            case Spawned.AGAIN:  # a concurrent call with the same id started it
                found = await read_run(lease.runs.redis, lease.runs.keys.session(lease.session_id), child_id)
                assert found is not None, f"child run {child_id} has no record"  # (the script found it)
                self._known[child_id] = found
                return found
            case Spawned.TOO_MANY:
                raise SpawnRefused(
                    "too_many_children",
                    422,
                    f"a run starts at most {settings.max_children_per_run} children (TOKENTAIL_MAX_CHILDREN_PER_RUN)",
                )
        return None  # FULL, or CANCEL: the wait ends the run cancelled (await_children.lua)

    async def end_orphans(self, ended: Ending | None) -> None:
        """The run ended (`ended`: its terminal event, or None if it did not end here): cancel its
        children still going, whom no one waits for now (a parent that failed, or was cancelled)."""
        if ended is None or not self._known:
            return
        runs, lease = self._lease.runs, self._lease
        session_id = session_of(lease.session_id)
        reason = f"its parent run {lease.run_id} ended"
        try:
            await runs.tree.cancel_below(session_id, lease.run_id, reason)
        except Exception:  # they run on, and end by themselves
            logger.warning("run %s could not cancel its children", lease.run_id, exc_info=True)

    async def _count_spawn(self) -> str | None:
        """Count a spawn in its tenant's minute, before it starts its child (so that spawns at once never
        pass the bound together); past the bound, refuse it, uncounted. The minute's key it counted in
        (None: no bound), for `_uncount` if the child did not start after all."""
        most = self._settings.children_per_tenant_per_minute
        if most == 0:
            return None
        runs = self._lease.runs
        key = runs.keys.spawns(self._tenant, int(time.time() // 60))
        count = await count_spawn(runs.redis, key)
        if count > most:
            await self._uncount(key)
            raise SpawnRefused(
                "spawn_rate_limited",
                429,
                f"a tenant's runs start at most {most} children a minute (TOKENTAIL_CHILDREN_PER_TENANT_PER_MINUTE)",
            )
        return key

    async def _uncount(self, key: str) -> None:
        await uncount_spawn(self._lease.runs.redis, key)


# Inline children: a framework's own sub-agents (an OpenAI Agents SDK agent used as a tool, a handoff, a
# LangGraph subgraph, a PydanticAI agent called in a tool) run inside the parent's code, in its worker,
# so they cannot be runs of their own as `spawn`'s are. Clients still see them as children: each has a
# run id of its own (`child_run_id`, the same in every attempt of the parent), its `run.spawned` and
# `run.started`, events carrying its id, and its end, all appended through the parent's writer under
# the parent's lease. Durable only as the parent's record is: a parent that goes on from its record
# opens its inline children again, and what their records hold is not appended twice
# (worker/run/recovery/replay.py); none has a run record, a lease, questions or steers of its own.


class InlineChildren:
    """The inline children of one attempt's run, and their records when the attempt goes on from its own."""

    def __init__(self, writer: EventWriter, run: RunRecord, add_usage: Callable[[int, int], None]) -> None:
        """`add_usage`: the run's (its meter's): what its children's models cost is its cost too."""
        self.writer = writer
        self.add_usage = add_usage
        self.attempt = run.attempt
        self._queued_seq = run.queued_seq or 0
        self._session: asyncio.Future[_Recorded] | None = None  # read once, by the first child opened again

    async def open(self, parent: str, name: str, call_id: str, text: str, agent: str | None) -> "InlineChild":
        """Show child `name` of run `parent` (this run, or an inline child of it), for its call `call_id`."""
        child = InlineChild(self, child_run_id(parent, call_id), parent, name)
        if not await self._spawned_before(child.run_id, parent):
            cause = SpawnCause(call_id=call_id)
            spawned = RunSpawned(
                run_id=child.run_id, parent_run_id=parent, agent=agent or name, name=name, input=text, cause=cause
            )
            await self.writer.emit(spawned)
            await self.writer.emit(RunStarted(run_id=child.run_id, parent_run_id=parent, attempt=1))
        return child

    async def _spawned_before(self, run_id: str, parent: str) -> bool:
        """Whether an attempt before this one spawned the child. When this one goes on from the run's
        record, the replay gets the child's record, cut where its parent's is (told to clients by a
        `run.continued` of the child, which drops the same); when it started over, the child does too
        (`run.retrying`: clients drop all it streamed). A first attempt reads nothing."""
        replay = self.writer.recorded
        if not isinstance(replay, Replay) and self.attempt <= 1:
            return False
        if self._session is None:
            self._session = asyncio.ensure_future(self._read())
        session = await asyncio.shield(self._session)
        spawned = run_id in session.spawned
        if not isinstance(replay, Replay):
            if spawned:
                why = f"its parent run {self.writer.lease.run_id} started over"
                await self.writer.emit(
                    RunRetrying(run_id=run_id, parent_run_id=parent, attempt=self.attempt, reason=why)
                )
                again = RunStarted(run_id=run_id, parent_run_id=parent, attempt=self.attempt, reason="takeover")
                await self.writer.emit(again)
            return spawned
        if not spawned:
            replay.child(run_id, None)
            return False
        log, cut = RunLog.of(run_id, session.events), replay.log.last_seq
        if any(event.type in TERMINAL_EVENTS for event in log.events) or all(e.seq <= cut for e in log.events):
            replay.child(run_id, log)  # ended (all it streams again is held), or nothing past the cut
            return True
        replay.child(run_id, log.kept_until(cut))
        await self.writer.emit(
            RunContinued(run_id=run_id, parent_run_id=parent, attempt=self.attempt, from_event_id=cut)
        )
        return True

    async def _read(self) -> "_Recorded":
        """The session's events since the run was queued: its inline children's are among them."""
        lease = self.writer.lease
        keys = lease.runs.keys.session(lease.session_id)
        recorded = _Recorded([], set())
        start = str(self._queued_seq)
        while entries := await stream_from(lease.runs.redis, keys, start, FOLLOW_BATCH):
            for entry_id, fields in entries:
                seq, event_type, data = int(entry_id.split(b"-")[0]), fields[b"type"].decode(), fields[b"data"]
                recorded.events.append((seq, event_type, data))
                if event_type == EventType.RUN_SPAWNED:
                    recorded.spawned.add(json.loads(data)["run_id"])
            start = "(" + entries[-1][0].decode()
        return recorded


@dataclass(slots=True)
class _Recorded:
    events: list[tuple[int, str, bytes]]  # (seq, type, data JSON)
    spawned: set[str]  # the children spawned in them


class InlineChild:
    """A framework's sub-agent shown as a child run (`RunContext.subagent`): its text, reasoning, status,
    data and tool calls as the child's events; then `end` (its output: by default the text it streamed)
    or `fail`. Used as `async with`, it ends when the block does, or fails with its exception."""

    def __init__(self, children: InlineChildren, run_id: str, parent_run_id: str, name: str) -> None:
        self.run_id = run_id
        self.parent_run_id = parent_run_id
        self.name = name
        self._children = children
        self._writer = children.writer
        self._text: list[str] = []
        self._chars = 0
        self._calls: dict[str, float] = {}  # open tool calls: when each started
        self._usage = {"input_tokens": 0, "output_tokens": 0}
        self.ended = False

    async def delta(self, text: str, *, agent: str | None = None) -> None:
        """Its answer text (its output), never its parent's."""
        self._chars += len(text)
        if self._chars > self._writer.max_output_chars:
            raise OutputTooLarge(f"child run {self.run_id}'s text exceeded {self._writer.max_output_chars} characters")
        self._text.append(text)
        await self._writer.child_text(self.run_id, MessageDelta, text, agent)

    async def reasoning(self, text: str, *, agent: str | None = None) -> None:
        await self._writer.child_text(self.run_id, ReasoningDelta, text, agent)

    async def status(self, text: str, *, agent: str | None = None) -> None:
        await self._writer.emit(Status(run_id=self.run_id, text=text, agent=agent))

    async def data(self, name: str, data: Any, *, agent: str | None = None) -> None:
        await self._writer.emit(CustomData(run_id=self.run_id, name=name, data=data, agent=agent))

    async def tool_started(
        self, call_id: str, name: str, arguments: dict[str, Any], *, agent: str | None = None
    ) -> None:
        self._calls[call_id] = time.monotonic()
        await self._writer.emit(
            ToolStarted(run_id=self.run_id, call_id=call_id, name=name, arguments=arguments, agent=agent)
        )

    async def tool_finished(
        self,
        call_id: str,
        *,
        result: Any = None,
        error: str | BaseException | None = None,
        denied: bool = False,
        agent: str | None = None,
    ) -> None:
        started = self._calls.pop(call_id, None)
        duration_ms = int((time.monotonic() - started) * 1000) if started is not None else 0
        await self._writer.emit(tool_end(self.run_id, call_id, result, error, denied, agent, duration_ms))

    async def subagent(self, name: str, *, call_id: str, input: str = "", agent: str | None = None) -> "InlineChild":  # noqa: A002
        """A sub-agent of this one, shown as its child (a grandchild of the run)."""
        return await self._children.open(self.run_id, name, call_id, input, agent)

    def add_usage(self, input_tokens: int, output_tokens: int) -> None:
        """What a model call of the child cost: its own (in its `run.completed`), and its parent run's."""
        self._usage["input_tokens"] += input_tokens
        self._usage["output_tokens"] += output_tokens
        self._children.add_usage(input_tokens, output_tokens)

    @property
    def output(self) -> str:
        """The text it streamed (in this attempt and, replayed, before it)."""
        return "".join(self._text)

    async def end(self, output: str | None = None, usage: dict[str, Any] | None = None) -> None:
        """It completed: `run.completed` with `output` (by default the text it streamed)."""
        await self._end(
            RunCompleted(
                run_id=self.run_id, output=self.output if output is None else output, usage=usage or self._usage
            )
        )

    async def fail(self, error: str | BaseException, type: str = "agent_error") -> None:  # noqa: A002
        """It failed (its parent goes on, or fails with it, as the framework decides): `run.failed`."""
        await self._end(RunFailed(run_id=self.run_id, error=ErrorInfo(type=type, message=error_text(error))))

    async def cancel(self, reason: str) -> None:
        await self._end(RunCancelled(run_id=self.run_id, reason=reason))

    async def _end(self, ending: Ending) -> None:
        if self.ended:
            return  # (a framework may tell the end twice: by its result and by its stream's end)
        self.ended = True
        for call_id in list(self._calls):  # calls left open end with it, as a run's do
            await self.tool_finished(call_id, error=asyncio.CancelledError())
        ending.parent_run_id = self.parent_run_id
        await self._writer.emit(ending)

    async def __aenter__(self) -> "InlineChild":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.end()
        elif isinstance(exc, asyncio.CancelledError):
            await self.cancel("cancelled")
        elif isinstance(exc, Exception):
            await self.fail(exc)
