"""An OpenAI Agents SDK agent (examples/openai_agents_agent.py, unchanged) in real gateway and worker
processes, its OpenAI client streaming from the local fake OpenAI server."""

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any, cast
from unittest.mock import ANY

import pytest

pytest.importorskip("agents")

from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks.scenarios import (  # noqa: E402
    Example,
    answer_with_the_weather_tool,
    cancel_mid_answer,
    worker_killed_mid_answer,
)
from tests.support.waiting import scaled  # noqa: E402
from tokentail.shared.store.scripts.runs import Applied, AppliedSteers  # noqa: E402
from tokentail.shared.vocabulary.events import EventData, event_type_of  # noqa: E402
from tokentail.shared.vocabulary.records import RunRecord, Turn  # noqa: E402
from tokentail.worker.run.context import RunContext  # noqa: E402
from tokentail.worker.writes.steer_inbox import SteerInbox  # noqa: E402
from tokentail.worker.writes.writer import EventWriter  # noqa: E402

AGENTS = '{"weather": "examples.openai_agents_agent:weather"}'


@pytest.fixture
def example(stack: Stack, llm: str) -> Example:
    return Example(stack, llm, AGENTS)


async def test_the_answer_streams_with_the_tool_call_and_usage(example: Example) -> None:
    events = await answer_with_the_weather_tool(example)
    labels = {data.get("agent") for _, kind, data in events if kind.startswith(("tool.", "message."))}
    assert labels == {"weather"}  # the SDK agent's name


async def test_a_cancel_mid_answer_stops_the_model_s_stream(example: Example) -> None:
    await cancel_mid_answer(example)


async def test_a_worker_killed_mid_answer_is_taken_over_and_the_run_completes(example: Example) -> None:
    await worker_killed_mid_answer(example)


# In-process, with the SDK's own test double (agents.testing.ScriptedModel) in place of a model.


class Recorder:
    """Stands in for the run's EventWriter: records what the agent streams, in order. `hold`, once
    set, makes the next delta wait forever (a write to Redis that the cancel lands in)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()
        self.lease = self  # the run's lease: no steer is ever sent to it
        self.inbox = SteerInbox()
        self.text = ""

    async def apply_steers(self, step_key: str, output_at: int) -> AppliedSteers:
        return AppliedSteers(Applied.NONE)

    async def in_order(self, write: Any) -> Any:
        return await write()

    async def delta(self, text: str, agent: str | None = None) -> None:
        self.events.append(("message.delta", {"text": text, "agent": agent}))
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()

    async def reasoning(self, text: str, agent: str | None = None) -> None:
        self.events.append(("reasoning.delta", {"text": text, "agent": agent}))

    async def emit(self, data: EventData) -> None:
        self.events.append((event_type_of(data), data.model_dump(exclude={"run_id"})))


def _context(recorder: Recorder, history: list[Turn] | None = None) -> RunContext:
    run = RunRecord(run_id="r", input="What is the weather in Paris?")
    return RunContext(cast(EventWriter, recorder), "s", run, history or [])


async def test_a_handoff_relabels_the_events_and_usage_adds_up_over_the_model_calls() -> None:
    from agents import Agent, RunConfig, function_tool
    from agents.testing import ScriptedModel, assistant_message, function_call
    from agents.usage import Usage

    from tokentail.frameworks.openai_agents import openai_agent

    def get_weather(city: str) -> dict[str, object]:
        """The weather in a city."""
        return {"city": city, "sky": "sunny"}

    model = ScriptedModel(
        [
            [function_call("transfer_to_forecaster", {}, call_id="handoff_1")],
            [function_call("get_weather", {"city": "Paris"}, call_id="call_1")],
            [assistant_message("Sunny in Paris.")],
        ],
        default_usage=Usage(requests=1, input_tokens=10, output_tokens=3, total_tokens=13),
    )
    forecaster = Agent(name="forecaster", model=model, tools=[function_tool(get_weather)])
    triage = Agent(name="triage", model=model, handoffs=[forecaster])
    recorder = Recorder()
    ctx = _context(
        recorder,
        [
            Turn(role="user", content="Hi", run_id="r0"),
            Turn(role="assistant", content="Hello!", run_id="r0", status="completed"),
        ],
    )
    await openai_agent(triage, run_config=RunConfig(tracing_disabled=True))(ctx)
    assert recorder.events == [
        (
            "tool.started",
            {"call_id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}, "agent": "forecaster"},
        ),
        (
            "tool.completed",
            {
                "call_id": "call_1",
                "result": {"city": "Paris", "sky": "sunny"},
                "duration_ms": ANY,
                "agent": "forecaster",
            },
        ),
        ("message.delta", {"text": "Sunny in Paris.", "agent": "forecaster"}),
    ]
    assert ctx.this_attempt.meter.usage == {"input_tokens": 30, "output_tokens": 9}
    first = model.first_call
    assert first is not None and first.input == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]


class _Steered(RunContext):
    """A run's context whose steers the test sends (`steer`), as the worker would have them."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(cast(EventWriter, recorder), "s", RunRecord(run_id="r", input="Weather in Paris?"), [])
        self.waiting: list[str] = []
        self.told = False

    def steer(self, text: str, told: bool = True) -> None:
        self.waiting.append(text)
        self.told = self.told or told

    async def steers(self) -> list[str]:
        taken, self.waiting, self.told = self.waiting, [], False
        return taken

    @property
    def steered(self) -> bool:
        return self.told


def _user_messages(call: Any) -> list[str]:
    return [item["content"] for item in call.input if isinstance(item, dict) and item.get("role") == "user"]


async def test_steers_go_in_between_turns_stay_for_later_calls_and_one_after_the_answer_runs_on() -> None:
    from agents import Agent, RunConfig, function_tool
    from agents.testing import ScriptedModel, assistant_message, function_call

    from tokentail.frameworks.openai_agents import openai_agent

    ctx = _Steered(Recorder())

    def get_weather(city: str) -> dict[str, object]:
        """The weather in a city."""
        ctx.steer("in French")  # sent while the tool runs: the worker is told
        return {"city": city, "sky": "sunny"}

    model = ScriptedModel(
        [
            [function_call("get_weather", {"city": "Paris"}, call_id="call_1")],
            [function_call("get_weather", {"city": "Lyon"}, call_id="call_2")],
            [assistant_message("Ensoleillé.")],
            [assistant_message("Oui, ensoleillé.")],
        ]
    )
    seen_filter: list[int] = []

    def yours(data: Any) -> Any:  # the user's own filter still runs, after the steers are in
        seen_filter.append(len(data.model_data.input))
        return data.model_data

    weather = Agent(name="weather", model=model, tools=[function_tool(get_weather)])
    agent = openai_agent(weather, run_config=RunConfig(tracing_disabled=True, call_model_input_filter=yours))

    original = ctx.steers

    async def steers_then_one_more() -> list[str]:
        taken = await original()
        if len(model.calls) == 3 and not taken and not ctx.waiting:
            ctx.steer("sure?", told=False)  # sent during the last answer, its word missed
            return await original()
        return taken

    ctx.steers = steers_then_one_more  # type: ignore[method-assign]
    await agent(ctx)
    calls = model.calls
    assert len(calls) == 4 and len(seen_filter) == 4
    assert _user_messages(calls[0]) == ["Weather in Paris?"]
    assert _user_messages(calls[1]) == ["Weather in Paris?", "in French"]  # after the tool's result
    assert _user_messages(calls[2]) == ["Weather in Paris?", "in French", "in French"]
    assert _user_messages(calls[3]) == ["Weather in Paris?", "in French", "in French", "sure?"]
    assert calls[3].input[-1] == {"role": "user", "content": "sure?"}


async def test_a_cancel_while_an_event_is_being_written_still_stops_the_model_s_stream() -> None:
    """The SDK stops its run loop itself when the task is cancelled waiting on its queue; a cancel
    that lands anywhere else (here: writing a delta) is the adapter's to pass on, by result.cancel()."""
    from agents import Agent, RunConfig
    from agents.testing import ModelCall, ModelStep, ScriptedModel
    from openai.types.responses import ResponseStreamEvent, ResponseTextDeltaEvent

    from tokentail.frameworks.openai_agents import openai_agent

    closed = asyncio.Event()

    async def endless(call: ModelCall) -> AsyncIterator[ResponseStreamEvent]:
        try:
            for n in itertools.count():
                yield ResponseTextDeltaEvent(
                    type="response.output_text.delta",
                    item_id="m",
                    output_index=0,
                    content_index=0,
                    delta=f"word{n} ",
                    logprobs=[],
                    sequence_number=n,
                )
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    recorder = Recorder()
    recorder.hold = asyncio.Event()
    running = asyncio.ensure_future(
        openai_agent(
            Agent(name="a", model=ScriptedModel([ModelStep.stream(endless)])),
            run_config=RunConfig(tracing_disabled=True),
        )(_context(recorder))
    )
    await asyncio.wait_for(recorder.held.wait(), scaled(10))
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await asyncio.wait_for(closed.wait(), scaled(10))


@pytest.mark.parametrize("own_formatter", [False, True])
async def test_a_tool_that_raises_is_a_failed_call_though_the_model_is_told_the_sdk_s_message(
    own_formatter: bool,
) -> None:
    # The SDK answers the model with a message in the tool's place: the stream said the call completed.
    from agents import Agent, RunConfig, function_tool
    from agents.testing import ScriptedModel, assistant_message, function_call

    from tokentail.frameworks.openai_agents import openai_agent

    def get_weather(city: str) -> str:
        """The weather in a city."""
        raise RuntimeError("weather service unavailable")

    model = ScriptedModel(
        [[function_call("get_weather", {"city": "Paris"}, call_id="call_1")], [assistant_message("No weather.")]]
    )
    told: list[str] = []

    def formatter(args: Any) -> str:
        told.append(args.call_id)
        return "the service is down"

    config = RunConfig(tracing_disabled=True, tool_error_formatter=formatter if own_formatter else None)
    recorder = Recorder()
    await openai_agent(Agent(name="weather", model=model, tools=[function_tool(get_weather)]), run_config=config)(
        _context(recorder)
    )
    kinds = [kind for kind, _ in recorder.events]
    assert kinds == ["tool.started", "tool.failed", "message.delta"], recorder.events
    assert (
        recorder.events[1][1]["call_id"] == "call_1" and recorder.events[1][1]["error"] == "weather service unavailable"
    )
    assert told == (["call_1"] if own_formatter else [])  # the user's own formatter still answers the model


async def test_an_agent_used_as_a_tool_streams_as_a_child_run() -> None:
    """`as_tool(on_stream=subagent_events)`, as the SDK's docs write agents-as-tools (a sync tool in the
    nested agent): its nested run is a child on the wire, inside the run's tool call."""
    from agents import Agent, RunConfig, function_tool
    from agents.testing import ScriptedModel, assistant_message, function_call

    from tests.unit.worker.writes.test_writer import LeaseTicks, RecordingLease
    from tokentail.frameworks.openai_agents import openai_agent, subagent_events
    from tokentail.shared.vocabulary.records import child_run_id

    @function_tool  # type: ignore[untyped-decorator]  # (Any where mypy runs: no agents there)
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    model = ScriptedModel(
        [
            [function_call("research", {"input": "Paris"}, call_id="call_r")],  # the parent calls its agent tool
            [function_call("get_weather", {"city": "Paris"}, call_id="call_w")],  # the nested agent, its tool
            [assistant_message("Sunny.")],  # the nested agent's answer
            [assistant_message("It is sunny in Paris.")],  # the parent's
        ]
    )
    researcher = Agent(name="researcher", model=model, tools=[get_weather])
    tool = researcher.as_tool(tool_name="research", tool_description="Look it up.", on_stream=subagent_events)
    lead = Agent(name="lead", model=model, tools=[tool])
    lease = RecordingLease()
    writer = EventWriter(lease, LeaseTicks(0), max_output_chars=10_000)  # type: ignore[arg-type]
    ctx = RunContext(writer, "s", RunRecord(run_id="r", input="Weather in Paris?"), [])
    await openai_agent(lead, run_config=RunConfig(tracing_disabled=True))(ctx)
    await writer.flush()

    child = child_run_id("r", "call_r")
    shown = [(kind, data["run_id"], data.get("call_id") or data.get("text")) for kind, data in lease.events]
    assert shown == [
        ("tool.started", "r", "call_r"),
        ("run.spawned", child, None),
        ("run.started", child, None),
        ("tool.started", child, "call_w"),
        ("tool.completed", child, "call_w"),
        ("message.delta", child, "Sunny."),
        ("run.completed", child, None),
        ("tool.completed", "r", "call_r"),
        ("message.delta", "r", "It is sunny in Paris."),
    ]
    spawned = next(data for kind, data in lease.events if kind == "run.spawned")
    assert spawned["parent_run_id"] == "r" and spawned["agent"] == "researcher" and spawned["input"] == "Paris"
    assert spawned["cause"] == {"type": "tool_call", "call_id": "call_r"}
    ended = next(data for kind, data in lease.events if kind == "run.completed")
    assert ended["output"] == "Sunny." and ended["parent_run_id"] == "r"
    labels = {data.get("agent") for kind, data in lease.events if kind.startswith(("tool.", "message."))}
    assert labels == {"lead", "researcher"}  # the `agent` labels stay as they were
    assert ctx.this_attempt.output == "It is sunny in Paris."  # the child's text is not the run's answer
