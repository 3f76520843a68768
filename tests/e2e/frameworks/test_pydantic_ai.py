"""The PydanticAI adapter. Its mapping of a run's events, driven by PydanticAI's own test doubles
(FunctionModel, TestModel: no network, no Redis); then the weather agent of
examples/pydantic_ai_agent.py, unchanged, in real gateway and worker processes, its OpenAIChatModel
streaming from the local fake OpenAI server. Runs in the framework's nox environment."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
import pytest

pytest.importorskip("pydantic_ai")

from pydantic import BaseModel  # noqa: E402
from pydantic_ai import Agent, ModelRetry  # noqa: E402
from pydantic_ai.messages import (  # noqa: E402
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import (  # noqa: E402
    AgentInfo,
    DeltaThinkingPart,
    DeltaToolCall,
)
from pydantic_ai.models.function import FunctionModel as _FunctionModel  # noqa: E402
from pydantic_ai.models.test import TestModel as _TestModel  # noqa: E402

from tests.clients.sse_client import read_events  # noqa: E402
from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks.scenarios import (  # noqa: E402
    QUESTION,
    Example,
    answer_with_the_weather_tool,
    cancel_mid_answer,
    worker_killed_mid_answer,
)
from tests.support.waiting import scaled
from tokentail.frameworks.pydantic_ai import history, pydantic_ai_agent  # noqa: E402
from tokentail.shared.vocabulary.records import Turn  # noqa: E402
from tokentail.worker.run.context import RunContext  # noqa: E402


class Recorder:
    """The RunContext calls the adapter makes, in order."""

    def __init__(self, input: str, turns: list[Turn] | None = None) -> None:
        self.input = input
        self.history = turns or []
        self.calls: list[tuple[Any, ...]] = []
        self.usage: dict[str, int] = {}
        self.waiting: list[str] = []  # steers sent and not taken in
        self.steered = False  # as RunContext.steered: the worker was told of one

    def steer(self, text: str, told: bool = True) -> None:
        self.waiting.append(text)
        self.steered = self.steered or told

    async def steers(self) -> list[str]:
        taken, self.waiting, self.steered = self.waiting, [], False
        if taken:
            self.calls.append(("steers", taken))
        return taken

    async def delta(self, text: str, *, agent: str | None = None) -> None:
        self.calls.append(("delta", text))

    async def reasoning(self, text: str, *, agent: str | None = None) -> None:
        self.calls.append(("reasoning", text))

    async def data(self, name: str, data: Any, *, agent: str | None = None) -> None:
        self.calls.append(("data", name, data))

    async def tool_started(
        self, call_id: str, name: str, arguments: dict[str, Any], *, agent: str | None = None
    ) -> None:
        self.calls.append(("tool_started", call_id, name, arguments))

    async def tool_finished(
        self, call_id: str, *, result: Any = None, error: str | BaseException | None = None, agent: str | None = None
    ) -> None:
        self.calls.append(("tool_finished", call_id, result, error))

    def add_usage(self, input_tokens: int, output_tokens: int) -> None:
        self.usage["input_tokens"] = self.usage.get("input_tokens", 0) + input_tokens
        self.usage["output_tokens"] = self.usage.get("output_tokens", 0) + output_tokens

    def text(self) -> str:
        return "".join(call[1] for call in self.calls if call[0] == "delta")


async def _run(agent: Agent[Any, Any], recorder: Recorder) -> None:
    await pydantic_ai_agent(agent)(cast(RunContext, recorder))


def _weather_model() -> _FunctionModel:
    """Calls get_weather with its arguments in fragments, then thinks and answers with the result."""

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | dict[int, Any]]:
        results = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
        if not results:
            yield {0: DeltaToolCall(name="get_weather", json_args='{"ci', tool_call_id="call_1")}
            yield {0: DeltaToolCall(json_args='ty": "Paris"}')}
            return
        yield {0: DeltaThinkingPart(content="The tool ")}
        yield {0: DeltaThinkingPart(content="answered.")}
        yield "It is "
        yield f"{results[-1].model_response_object()['sky']} in Paris."

    return _FunctionModel(stream_function=stream)


async def test_text_thinking_and_a_tool_call_map_in_order_with_usage() -> None:
    def get_weather(city: str) -> dict[str, Any]:
        return {"city": city, "sky": "sunny"}

    agent = Agent(_weather_model(), tools=[get_weather])
    recorder = Recorder("What is the weather in Paris?")
    await _run(agent, recorder)
    assert recorder.calls == [
        ("tool_started", "call_1", "get_weather", {"city": "Paris"}),
        ("tool_finished", "call_1", {"city": "Paris", "sky": "sunny"}, None),
        ("reasoning", "The tool "),
        ("reasoning", "answered."),
        ("delta", "It is "),
        ("delta", "sunny in Paris."),
    ]
    assert recorder.usage["input_tokens"] > 0 and recorder.usage["output_tokens"] > 0


async def test_a_tool_that_asks_for_a_retry_is_reported_failed_then_called_again() -> None:
    tries: list[int] = []

    def flaky(n: int) -> str:
        tries.append(n)
        if len(tries) == 1:
            raise ModelRetry("try again")
        return "ok"

    agent = Agent(_TestModel(), tools=[flaky])
    recorder = Recorder("go")
    await _run(agent, recorder)
    tools = [call for call in recorder.calls if call[0].startswith("tool")]
    assert [call[0] for call in tools] == ["tool_started", "tool_finished"] * 2
    assert tools[1][3] is not None and "try again" in tools[1][3]  # tool.failed with the feedback
    assert tools[3][2] == "ok" and tools[3][3] is None
    assert recorder.text() == '{"flaky":"ok"}'  # TestModel answers with the tools' results


async def test_a_structured_output_is_a_data_event() -> None:
    class Forecast(BaseModel):
        city: str
        sky: str

    agent = Agent(_TestModel(custom_output_args={"city": "Paris", "sky": "sunny"}), output_type=Forecast)
    recorder = Recorder("forecast?")
    await _run(agent, recorder)
    assert recorder.calls == [("data", "output", {"city": "Paris", "sky": "sunny"})]


def test_the_session_s_turns_become_message_history() -> None:
    turns = [
        Turn(role="user", content="Hi", run_id="r1"),
        Turn(role="assistant", content="Hello!", run_id="r1", status="completed"),
        Turn(role="user", content="Stop", run_id="r2"),
        Turn(role="assistant", content="", run_id="r2", status="cancelled"),
    ]
    messages = history(cast(RunContext, Recorder("next", turns)))
    assert [type(m) for m in messages] == [ModelRequest, ModelResponse, ModelRequest]
    assert isinstance(messages[0].parts[0], UserPromptPart) and messages[0].parts[0].content == "Hi"
    assert isinstance(messages[1].parts[0], TextPart) and messages[1].parts[0].content == "Hello!"


async def test_the_agent_is_given_the_history() -> None:
    seen: list[list[ModelMessage]] = []

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        seen.append(messages)
        yield "ok"

    turns = [Turn(role="user", content="Hi", run_id="r1"), Turn(role="assistant", content="Hello!", run_id="r1")]
    await _run(Agent(_FunctionModel(stream_function=stream)), Recorder("Again", turns))
    prompts = [
        (type(m).__name__, part.content)
        for m in seen[0]
        for part in m.parts
        if isinstance(part, UserPromptPart | TextPart)
    ]
    assert prompts == [("ModelRequest", "Hi"), ("ModelResponse", "Hello!"), ("ModelRequest", "Again")]


def _prompts(messages: list[ModelMessage]) -> list[str]:
    return [
        str(p.content)
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, UserPromptPart)
    ]


async def test_a_steer_sent_while_a_tool_runs_goes_into_the_next_model_request_once() -> None:
    seen: list[list[ModelMessage]] = []
    recorder = Recorder("What is the weather in Paris?")

    def get_weather(city: str) -> dict[str, Any]:
        recorder.steer("in French")  # sent while the tool runs: the worker is told
        return {"city": city, "sky": "sunny"}

    model = _weather_model()
    stream_function = model.stream_function
    assert stream_function is not None

    async def recording(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        seen.append(list(messages))
        async for piece in stream_function(messages, info):
            yield piece

    await _run(Agent(_FunctionModel(stream_function=recording), tools=[get_weather]), recorder)
    assert [_prompts(messages) for messages in seen] == [
        ["What is the weather in Paris?"],
        ["What is the weather in Paris?", "in French"],
    ]
    assert ("steers", ["in French"]) in recorder.calls and recorder.text() == "It is sunny in Paris."


async def test_a_steer_sent_during_the_last_answer_gets_one_more_request() -> None:
    seen: list[list[ModelMessage]] = []
    recorder = Recorder("Capital of France?")

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        seen.append(list(messages))
        if len(seen) == 1:
            yield "Paris."
            recorder.steer("in French", told=False)  # its word missed: found when the answer ends
        else:
            yield " Paris est la capitale."

    await _run(Agent(_FunctionModel(stream_function=stream)), recorder)
    assert len(seen) == 2 and _prompts(seen[1]) == ["Capital of France?", "in French"]
    assert recorder.text() == "Paris. Paris est la capitale."


# End to end: real gateway and worker processes, the fake OpenAI server.

AGENTS = '{"weather": "examples.pydantic_ai_agent:weather"}'


@pytest.fixture
def example(stack: Stack, llm: str) -> Example:
    return Example(stack, llm, AGENTS)


async def test_the_answer_streams_with_the_tool_call_live_and_usage(example: Example) -> None:
    await answer_with_the_weather_tool(example)


async def test_a_cancel_mid_answer_stops_the_model_s_stream(example: Example) -> None:
    await cancel_mid_answer(example)


async def test_a_worker_killed_mid_answer_is_taken_over_and_the_run_completes(example: Example) -> None:
    await worker_killed_mid_answer(example)


async def test_a_tool_that_raises_ends_its_call_failed_before_the_run_fails(stack: Stack, llm: str) -> None:
    # Its call was left open: tool.started, then run.failed, where the docs promise tool.failed.
    example = Example(stack, llm, '{"weather": "tests.e2e.frameworks.pydantic_ai_raising:weather"}')
    url = example.gateway()
    example.worker()
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        created = (await client.post("/v1/sessions", json={"input": QUESTION, "agent": "weather"})).json()
        events = (await asyncio.wait_for(read_events(client, created["events_url"]), scaled(60))).events
    assert [kind for _, kind, _ in events] == ["run.queued", "run.started", "tool.started", "tool.failed", "run.failed"]
    assert events[2][2]["call_id"] == events[3][2]["call_id"]
    assert events[3][2]["error"] == "weather service unavailable"


async def test_an_agent_delegated_to_in_a_tool_streams_as_a_child_run() -> None:
    """Agent delegation as PydanticAI's multi-agent docs write it (`usage=ctx.usage`), the delegate's run
    given `event_stream_handler=subagent_events`, its own tool sync as the tutorials write one: a child
    run on the wire, inside the parent's tool call; its text is not the run's answer."""
    from pydantic_ai import RunContext as AgentContext

    from tests.unit.worker.writes.test_writer import RecordingLease, _writer
    from tokentail.frameworks.pydantic_ai import subagent_events
    from tokentail.shared.vocabulary.records import RunRecord, child_run_id

    def answers(call: DeltaToolCall, text: str) -> _FunctionModel:
        """A model that calls a tool, then answers `text`."""

        async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | dict[int, Any]]:
            if not any(isinstance(p, ToolReturnPart) for m in messages if isinstance(m, ModelRequest) for p in m.parts):
                yield {0: call}
                return
            yield text

        return _FunctionModel(stream_function=stream)

    joke_agent = Agent(answers(DeltaToolCall(name="pun_seed", json_args="{}", tool_call_id="call_p"), "Cats purr."))

    @joke_agent.tool_plain  # type: ignore[untyped-decorator]  # (Any where mypy runs: no pydantic_ai there)
    def pun_seed() -> str:  # sync, as the tutorials write plain tools
        return "cats"

    delegating = DeltaToolCall(name="joke_factory", json_args='{"count": 1}', tool_call_id="call_j")
    parent = Agent(answers(delegating, "Done."))

    @parent.tool  # type: ignore[untyped-decorator]
    async def joke_factory(ctx: AgentContext[None], count: int) -> str:
        r = await joke_agent.run(
            f"Please generate {count} jokes.", usage=ctx.usage, event_stream_handler=subagent_events
        )
        return str(r.output)

    lease = RecordingLease()
    ctx = RunContext(_writer(lease, 0), "s", RunRecord(run_id="r", input="A joke?"), history=[])
    await pydantic_ai_agent(parent)(ctx)
    await ctx.this_attempt.writer.flush()
    child = child_run_id("r", "call_j")
    assert [(kind, data["run_id"], data.get("call_id") or data.get("text")) for kind, data in lease.events] == [
        ("tool.started", "r", "call_j"),
        ("run.spawned", child, None),
        ("run.started", child, None),
        ("tool.started", child, "call_p"),
        ("tool.completed", child, "call_p"),
        ("message.delta", child, "Cats purr."),
        ("run.completed", child, None),
        ("tool.completed", "r", "call_j"),
        ("message.delta", "r", "Done."),
    ]
    spawned = next(data for kind, data in lease.events if kind == "run.spawned")
    assert spawned["parent_run_id"] == "r" and spawned["agent"] == "joke_agent"
    assert spawned["cause"] == {"type": "tool_call", "call_id": "call_j"} and spawned["input"] == '{"count": 1}'
    ended = next(data for kind, data in lease.events if kind == "run.completed")
    assert ended["output"] == "Cats purr."
    assert ctx.this_attempt.output == "Done."
