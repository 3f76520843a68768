"""Inline children (worker/run/children.py `InlineChild`): a framework's sub-agent shown as a child run
through its parent's writer; its text is not the parent's answer, and a parent that goes on from its
record appends none of its children's events twice."""

import asyncio
import json
from typing import Any

import pytest

from tests.unit.worker.writes.test_writer import LeaseTicks, RecordingLease
from tokentail.shared.vocabulary.records import RunRecord, child_run_id
from tokentail.shared.vocabulary.run_log import RunLog
from tokentail.worker.agent_errors import OutputTooLarge
from tokentail.worker.run.context import RunContext
from tokentail.worker.writes.writer import EventWriter

Event = tuple[int, str, str]


class _Keys:
    class _Session:
        events = "events"

    def session(self, session_id: str) -> "_Keys._Session":
        return self._Session()


class _Stream:
    """A session's stream as XRANGE reads it (what InlineChildren reads when the run goes on)."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.reads = 0

    async def xrange(self, key: str, min: str, max: str, count: int) -> list[Any]:  # noqa: A002
        exclusive = min.startswith("(")
        self.reads += not exclusive  # (a read goes on past its last entry)
        after = int(min.lstrip("(").split("-")[0]) - (0 if exclusive else 1)
        found = [event for event in self.events if event[0] > after][:count]
        return [(b"%d-0" % seq, {b"type": kind.encode(), b"data": data.encode()}) for seq, kind, data in found]


class StreamLease(RecordingLease):
    """A RecordingLease whose session stream holds `record` (read back by an attempt that goes on)."""

    def __init__(self, record: list[Event]) -> None:
        super().__init__()
        self.runs = type("Runs", (), {"keys": _Keys(), "redis": _Stream(record)})()


def _context(record: list[Event] | None = None, attempt: int = 1, max_chars: int = 1_000_000) -> RunContext:
    lease = StreamLease(record or [])
    writer = EventWriter(lease, LeaseTicks(0.002), max_output_chars=max_chars)  # type: ignore[arg-type]
    run = RunRecord(run_id="r", input="question", attempt=attempt, queued_seq=1)
    log = RunLog.of("r", record) if record else None
    return RunContext(writer, "s", run, history=[], log=log)


def _events(ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
    lease: RecordingLease = ctx.this_attempt.writer.lease  # type: ignore[assignment]
    return lease.events


def _stream(*attempts: RunContext) -> list[Event]:
    """What the attempts appended, as the session's stream holds it after the run's `run.queued` (1)."""
    events: list[Event] = [(1, "run.queued", json.dumps({"run_id": "r", "input": "question"}))]
    for ctx in attempts:
        lease: RecordingLease = ctx.this_attempt.writer.lease  # type: ignore[assignment]
        for kind, data in (event for call in lease.calls for event in call):
            events.append((len(events) + 1, kind, data))
    return events


async def test_a_sub_agent_is_a_child_run_on_the_wire_and_its_text_is_not_the_parents_answer() -> None:
    ctx = _context()
    await ctx.delta("Let me ask. ")
    child = await ctx.subagent("researcher", call_id="call_1", input="find x")
    await child.delta("x is ")
    await ctx.delta("Meanwhile... ")  # interleaved: each run's text stays its own
    await child.delta("42")
    await child.tool_started("t1", "search", {"q": "x"})
    await child.tool_finished("t1", result="found")
    await child.end()
    await ctx.delta("Done.")
    await ctx.this_attempt.writer.flush()

    child_id = child_run_id("r", "call_1")
    events = _events(ctx)
    assert [(kind, data["run_id"]) for kind, data in events if kind.startswith("run.")] == [
        ("run.spawned", child_id),
        ("run.started", child_id),
        ("run.completed", child_id),
    ]
    spawned = next(data for kind, data in events if kind == "run.spawned")
    assert spawned == {
        "run_id": child_id,
        "parent_run_id": "r",
        "agent": "researcher",
        "name": "researcher",
        "input": "find x",
        "cause": {"type": "tool_call", "call_id": "call_1"},
    }
    started = next(data for kind, data in events if kind == "run.started")
    assert started == {"run_id": child_id, "parent_run_id": "r", "attempt": 1, "reason": "start"}
    completed = next(data for kind, data in events if kind == "run.completed")
    usage = {"input_tokens": 0, "output_tokens": 0}
    assert completed == {"run_id": child_id, "parent_run_id": "r", "output": "x is 42", "usage": usage}
    texts: dict[str, str] = {}
    for kind, data in events:
        if kind == "message.delta":
            texts[str(data["run_id"])] = texts.get(str(data["run_id"]), "") + str(data["text"])
    assert texts == {"r": "Let me ask. Meanwhile... Done.", child_id: "x is 42"}
    assert [data["run_id"] for kind, data in events if kind.startswith("tool.")] == [child_id, child_id]
    assert ctx.this_attempt.output == "Let me ask. Meanwhile... Done."


async def test_a_parent_whose_only_events_are_its_childs_has_not_answered() -> None:
    ctx = _context()
    async with await ctx.subagent("helper", call_id="c") as child:
        await child.delta("all the child says")
        await child.data("chart", [1, 2])
    assert ctx.this_attempt.output == "" and not ctx.this_attempt.answered


async def test_a_childs_text_has_its_own_bound_not_its_parents() -> None:
    ctx = _context(max_chars=10)
    child = await ctx.subagent("chatty", call_id="c")
    await child.delta("0123456789")
    await ctx.delta("0123456789")  # the parent's own bound is untouched by the child's text
    with pytest.raises(OutputTooLarge):
        await child.delta("!")


async def test_a_failing_block_fails_the_child_and_ends_its_open_tool_calls() -> None:
    ctx = _context()
    with pytest.raises(ValueError):
        async with await ctx.subagent("broken", call_id="c") as child:
            await child.tool_started("t", "fetch", {})
            raise ValueError("no network")
    await ctx.this_attempt.writer.flush()
    kinds = [(kind, data.get("error")) for kind, data in _events(ctx)]
    failed = {"type": "agent_error", "message": "no network"}
    assert kinds[-2:] == [("tool.failed", "cancelled"), ("run.failed", failed)]


async def test_a_grandchild_names_its_parent_child() -> None:
    ctx = _context()
    child = await ctx.subagent("planner", call_id="c1")
    grandchild = await child.subagent("searcher", call_id="c2", input="q")
    await grandchild.end("found")
    await child.end("planned")
    spawned = [data for kind, data in _events(ctx) if kind == "run.spawned"]
    assert [(data["run_id"], data["parent_run_id"]) for data in spawned] == [
        (child.run_id, "r"),
        (child_run_id(child.run_id, "c2"), child.run_id),
    ]


class Crash(Exception):
    pass


async def _agent(ctx: RunContext, crash: bool) -> None:
    """A parent streaming, with one child that ends and one the crash cuts mid-way (at the first attempt)."""
    await ctx.delta("A")
    async with await ctx.subagent("one", call_id="c1", input="x") as one:
        await one.delta("one says")
        await one.status("looking")
    two = await ctx.subagent("two", call_id="c2")
    await two.delta("two ")
    await asyncio.sleep(0.01)  # (appended before the crash)
    if crash:
        await ctx.this_attempt.writer.flush()
        raise Crash
    await two.delta("goes on")
    await two.end()
    await ctx.delta("B")


async def test_a_parent_going_on_from_its_record_appends_none_of_its_childrens_events_twice() -> None:
    first = _context()
    with pytest.raises(Crash):
        await _agent(first, crash=True)
    record = _stream(first)
    again = _context(record, attempt=2)
    await _agent(again, crash=False)
    await again.this_attempt.writer.flush()

    two = child_run_id("r", "c2")
    cut = RunLog.of("r", record).last_seq  # the parent's last event: "A"
    appended = [(kind, data["run_id"], data.get("text", data.get("from_event_id"))) for kind, data in _events(again)]
    # Child one ended: nothing of it again. Child two was cut by the crash: clients drop what it streamed
    # past its parent's point, and it streams that again, once; then the rest.
    assert appended == [
        ("run.continued", two, cut),
        ("message.delta", two, "two "),
        ("message.delta", two, "goes on"),
        ("run.completed", two, None),
        ("message.delta", "r", "B"),
    ]
    assert again.this_attempt.output == "AB"
    lease: StreamLease = again.this_attempt.writer.lease  # type: ignore[assignment]
    assert lease.runs.redis.reads == 1  # the session read once, for every child opened again


async def test_a_parent_that_starts_over_starts_its_children_over_under_the_same_ids() -> None:
    """A takeover that starts the parent over (no record to go on from, `run.retrying`): a child spawned
    before is not spawned twice; it starts over too (its `run.retrying` drops what it streamed)."""
    first = _context()
    with pytest.raises(Crash):
        await _agent(first, crash=True)
    lease = StreamLease(_stream(first))
    writer = EventWriter(lease, LeaseTicks(0.002), max_output_chars=1_000_000)  # type: ignore[arg-type]
    over = RunContext(writer, "s", RunRecord(run_id="r", input="question", attempt=2, queued_seq=1), history=[])
    await _agent(over, crash=False)
    await writer.flush()
    one, two = child_run_id("r", "c1"), child_run_id("r", "c2")
    lifecycle = [(kind, data["run_id"], data.get("attempt")) for kind, data in lease.events if kind.startswith("run.")]
    assert lifecycle == [
        ("run.retrying", one, 2),
        ("run.started", one, 2),
        ("run.completed", one, None),
        ("run.retrying", two, 2),
        ("run.started", two, 2),
        ("run.completed", two, None),
    ]
    assert RunLog.of(two, _stream(first, over)).text == "two goes on"  # as clients keep it: once


async def test_a_childs_tool_result_too_large_for_the_stream_is_shown_cut_as_the_runs_own_are() -> None:
    ctx = _context()
    child = await ctx.subagent("researcher", call_id="call_1", input="find x")
    await child.tool_started("t1", "search", {"q": "x"})
    await child.tool_finished("t1", result="y" * 400_000)  # past MAX_EVENT_BYTES: the run would fail on it
    await child.end()
    await ctx.this_attempt.writer.flush()
    (completed,) = [data for kind, data in _events(ctx) if kind == "tool.completed"]
    assert completed["result"].startswith('"' + "y" * 100) and "(truncated:" in completed["result"]  # its JSON, cut
