"""RunContext, the agent author's API: every kind of event it streams, with and without `agent`."""

import asyncio
from typing import TYPE_CHECKING

import pytest

from tests.unit.worker.writes.test_writer import RecordingLease, _writer
from tokentail.shared.vocabulary.events import CustomData, Event, ReasoningDelta
from tokentail.shared.vocabulary.records import Question, RunRecord
from tokentail.worker.agent_errors import EventTooLarge, ToolError, WaitingForInput
from tokentail.worker.run.context import RunContext, waiting_in

if TYPE_CHECKING:  # the SDK is an extra
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def _context(lease: RecordingLease, window: float = 0.0) -> RunContext:
    return RunContext(_writer(lease, window), "s", RunRecord(run_id="r", input="hi"), history=[])


async def test_reasoning_streams_apart_from_the_answer_and_never_joins_the_output() -> None:
    lease = RecordingLease()
    ctx = _context(lease, window=10)  # one long window: only a change of kind cuts the text
    await ctx.reasoning("The user wants ")
    await ctx.reasoning("a greeting.")
    await ctx.delta("Hello")
    await ctx.delta(" there")
    await ctx.reasoning("Done.")
    await ctx.this_attempt.writer.flush()
    assert lease.events == [
        ("reasoning.delta", {"run_id": "r", "text": "The user wants a greeting."}),
        ("message.delta", {"run_id": "r", "text": "Hello there"}),
        ("reasoning.delta", {"run_id": "r", "text": "Done."}),
    ]
    assert ctx.this_attempt.writer.text == "Hello there"


async def test_text_of_two_agents_is_never_joined_and_each_delta_names_its_agent() -> None:
    lease = RecordingLease()
    ctx = _context(lease, window=10)
    await ctx.delta("a1 ", agent="researcher")
    await ctx.delta("a2", agent="researcher")
    await ctx.delta("b1", agent="writer")
    await ctx.delta("c1")
    await ctx.this_attempt.writer.flush()
    assert lease.events == [
        ("message.delta", {"run_id": "r", "agent": "researcher", "text": "a1 a2"}),
        ("message.delta", {"run_id": "r", "agent": "writer", "text": "b1"}),
        ("message.delta", {"run_id": "r", "text": "c1"}),  # no agent: no key at all
    ]


async def test_data_events_carry_the_agent_s_json_under_their_own_name() -> None:
    lease = RecordingLease()
    ctx = _context(lease)
    await ctx.data("chart", {"points": [1, 2.5], "nothing": None}, agent="analyst")
    await ctx.data("count", 3)
    assert lease.events == [
        ("data.chart", {"run_id": "r", "agent": "analyst", "data": {"points": [1, 2.5], "nothing": None}}),
        ("data.count", {"run_id": "r", "data": 3}),
    ]
    typed = Event(id=1, event="data.chart", data=lease.events[0][1]).typed()
    assert isinstance(typed, CustomData) and typed.name == "chart" and typed.agent == "analyst"
    assert isinstance(Event(id=2, event="reasoning.delta", data={"run_id": "r", "text": "t"}).typed(), ReasoningDelta)


@pytest.mark.parametrize("name", ["", "a.b", "sp ace", "x" * 65, "ünï", "new\nline"])
async def test_a_data_name_that_would_break_the_event_type_is_refused(name: str) -> None:
    lease = RecordingLease()
    with pytest.raises(ValueError, match="data event names"):
        await _context(lease).data(name, 1)
    assert lease.calls == []


async def test_a_tool_reported_in_two_callbacks_streams_as_a_scoped_one_does() -> None:
    lease = RecordingLease()
    ctx = _context(lease)
    await ctx.tool_started("call_1", "weather", {"city": "Paris"}, agent="planner")
    await asyncio.sleep(0.02)
    await ctx.tool_finished("call_1", result={"temp_c": 21}, agent="planner")
    await ctx.tool_started("call_2", "weather", {"city": "Atlantis"})
    await ctx.tool_finished("call_2", error=LookupError("no such city"))
    await ctx.tool_finished("call_never_started", error="the framework ran it")
    (_, started), (_, completed), _, (_, failed), (_, unseen) = lease.events
    assert [kind for kind, _ in lease.events] == [
        "tool.started",
        "tool.completed",
        "tool.started",
        "tool.failed",
        "tool.failed",
    ]
    assert started == {
        "run_id": "r",
        "agent": "planner",
        "call_id": "call_1",
        "name": "weather",
        "arguments": {"city": "Paris"},
    }
    assert completed["result"] == {"temp_c": 21} and int(str(completed["duration_ms"])) >= 20
    assert failed["error"] == "no such city" and "agent" not in failed
    assert unseen == {"run_id": "r", "call_id": "call_never_started", "error": "the framework ran it", "duration_ms": 0}


async def test_the_tool_scope_reports_a_failure_and_lets_it_through() -> None:
    lease = RecordingLease()
    ctx = _context(lease)
    with pytest.raises(RuntimeError):
        async with ctx.tool("search", {"q": "x"}, call_id="c", agent="a"):
            raise RuntimeError("index offline")
    assert [(kind, data.get("agent"), data.get("error")) for kind, data in lease.events] == [
        ("tool.started", "a", None),
        ("tool.failed", "a", "index offline"),
    ]


async def test_ask_refuses_what_it_could_not_keep_or_check_before_the_run_waits() -> None:
    context = _context(RecordingLease())
    with pytest.raises(ValueError, match="choices"):
        await context.ask("Which?", kind="choice")
    with pytest.raises(ValueError, match="not a JSON Schema"):
        await context.ask("Form?", kind="json", schema={"type": "nonsense"})
    with pytest.raises(ValueError, match="default answer"):
        await context.ask("Name?", expires_in=5, on_expiry="default", default=3)
    with pytest.raises(ValueError, match="state must be JSON"):
        await context.ask("Name?", state={"at": object()})
    with pytest.raises(EventTooLarge, match="input.required event of"):
        await context.ask("Name? " * 50_000)  # past an event's bound: the run fails `event_too_large`
    with pytest.raises(ToolError, match="its params are"):  # an editor's request: the run hears it
        await context.client_request("fs/write_text_file", {"path": "/a", "content": "x" * 200_000})
    with pytest.raises(WaitingForInput) as waiting:
        await context.ask("Name?", kind="text", expires_in=60, on_expiry="default", default="nobody")
    assert waiting.value.questions[0].answer_schema == {"type": "string"}


async def _two_tools(ctx: RunContext, grouped: bool) -> tuple[object, object]:
    async def tool(name: str) -> object:
        await ctx.delta(f"{name} ")
        for _ in range(3 if name == "b" else 0):  # some work first: its question comes a few turns later
            await asyncio.sleep(0)
        return await ctx.ask(f"Run {name}?", kind="approval", call_id=name)

    if not grouped:
        first, second = await asyncio.gather(tool("a"), tool("b"))
        return first, second
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(tool("a")), group.create_task(tool("b"))]
    return tasks[0].result(), tasks[1].result()


@pytest.mark.parametrize("grouped", [False, True], ids=["gather", "task_group"])
async def test_questions_asked_at_once_wait_together_and_each_gets_its_answer_in_any_order(grouped: bool) -> None:
    with pytest.raises(BaseException) as raised:  # noqa: PT011 (a TaskGroup wraps it: worker/run/job.py unwraps)
        await _two_tools(_context(RecordingLease()), grouped)
    waiting = raised.value if isinstance(raised.value, WaitingForInput) else waiting_in(raised.value)  # type: ignore[arg-type]
    assert isinstance(waiting, WaitingForInput)
    assert [(q.prompt, q.call_id) for q in waiting.questions] == [("Run a?", "a"), ("Run b?", "b")]
    # The run goes on with both answers; its calls may come in the other order this time.
    run = RunRecord(run_id="r", input="hi", asked=list(reversed(waiting.questions)))
    run.answers = {q.input_id: {"approved": q.call_id == "a"} for q in waiting.questions}
    ctx = RunContext(_writer(RecordingLease(), 0.0), "s", run, history=[])
    assert await _two_tools(ctx, grouped) == ({"approved": True}, {"approved": False})


async def test_a_resumed_state_replays_the_last_questions_asked_at_once_and_only_those() -> None:
    def question(input_id: str, batch: int) -> Question:
        return Question(input_id=input_id, kind="text", prompt="?", answer_schema={}, batch=batch, state=batch)

    run = RunRecord(run_id="r", input="hi", resumes=2, asked=[question("a", 0), question("b", 1), question("c", 1)])
    run.answers = {"a": "A", "b": "B", "c": "C"}
    ctx = RunContext(_writer(RecordingLease(), 0.0), "s", run, history=[])
    assert ctx.resumed_state() == 1
    assert [await ctx.ask(""), await ctx.ask("")] == ["B", "C"]


async def test_a_tool_scope_is_an_execute_tool_span_ended_with_its_block(exported: "InMemorySpanExporter") -> None:
    ctx = _context(RecordingLease())
    async with ctx.tool("search", {"q": "x"}, call_id="c1") as call:
        call.result = ["a"]
    with pytest.raises(RuntimeError):
        async with ctx.tool("search", {"q": "y"}, call_id="c2"):
            raise RuntimeError("index offline")
    ok, failed = exported.get_finished_spans()
    assert (ok.name, dict(ok.attributes or {})["gen_ai.tool.call.id"]) == ("execute_tool search", "c1")
    assert ok.status.is_ok and dict(failed.attributes or {})["error.type"] == "RuntimeError"
