"""A Haystack agent (examples/haystack_agent.py, unchanged) in real gateway and worker processes,
its OpenAIChatGenerator streaming from the local fake OpenAI server; first, the chunk mapping in
process, driven by Haystack's own MockChatGenerator. (In this file, not tests/unit: the unit tier's
conftest needs fakeredis, which the framework's environment does not have.)"""

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any, cast

import httpx2
import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # read when haystack is imported
pytest.importorskip("haystack")

from haystack import Pipeline  # noqa: E402
from haystack.components.agents import Agent  # noqa: E402
from haystack.components.generators.chat import MockChatGenerator  # noqa: E402
from haystack.dataclasses import ChatMessage, ReasoningContent, StreamingChunk, ToolCall  # noqa: E402
from haystack.dataclasses.streaming_chunk import ToolCallDelta  # noqa: E402
from haystack.tools.from_function import create_tool_from_function  # noqa: E402

from shared.records import Turn  # noqa: E402
from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks import fake_openai  # noqa: E402
from tests.e2e.watcher import Watcher  # noqa: E402
from tests.waiting import eventually  # noqa: E402
from tokentail.frameworks.haystack import ChunkMapper, from_agent, from_pipeline, history  # noqa: E402
from worker.context import RunContext  # noqa: E402

AGENTS = '{"weather": "examples.haystack_agent:weather"}'
QUESTION = "What is the weather in Paris?"


class Recorder:
    """Takes a RunContext's place in process: records what the adapter streams, in order."""

    def __init__(self, input: str = QUESTION, turns: list[Turn] | None = None) -> None:
        self.input, self.history = input, turns or []
        self.events: list[tuple[str, Any]] = []
        self.usage = [0, 0]

    async def delta(self, text: str, *, agent: str | None = None) -> None:
        self.events.append(("delta", text))

    async def reasoning(self, text: str, *, agent: str | None = None) -> None:
        self.events.append(("reasoning", text))

    async def tool_started(
        self, call_id: str, name: str, arguments: dict[str, Any], *, agent: str | None = None
    ) -> None:
        self.events.append(("tool.started", (call_id, name, arguments)))

    async def tool_finished(
        self, call_id: str, *, result: Any = None, error: Any = None, agent: str | None = None
    ) -> None:
        self.events.append(("tool.failed", (call_id, error)) if error else ("tool.completed", (call_id, result)))

    def add_usage(self, input_tokens: int, output_tokens: int) -> None:
        self.usage = [self.usage[0] + input_tokens, self.usage[1] + output_tokens]

    def context(self) -> RunContext:
        return cast(RunContext, self)


def _weather(city: str) -> dict[str, Any]:
    """The current weather in a city."""
    return fake_openai.WEATHER | {"city": city}


def _broken_weather(city: str) -> str:
    """The weather, from a service that is down."""
    raise RuntimeError("weather service unavailable")


get_weather = create_tool_from_function(_weather, name="get_weather")
broken_weather = create_tool_from_function(_broken_weather, name="broken_weather")


async def test_an_agent_s_tool_call_and_answer_map_to_events_in_order() -> None:
    # No call id from the model (MockChatGenerator gives none): the call and its result still pair up.
    generator = MockChatGenerator(
        [ChatMessage.from_assistant(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]), "It is sunny."]
    )
    ctx = Recorder()
    await from_agent(Agent(chat_generator=generator, tools=[get_weather]))(ctx.context())
    (_, (call_id, name, arguments)), completed, *answer = ctx.events
    assert (name, arguments) == ("get_weather", {"city": "Paris"}) and call_id.startswith("get_weather-")
    assert completed == ("tool.completed", (call_id, fake_openai.WEATHER))  # the JSON the model got, as itself
    assert answer == [("delta", "It "), ("delta", "is "), ("delta", "sunny.")]


async def test_a_failing_tool_is_reported_and_the_agent_goes_on() -> None:
    call = ToolCall("broken_weather", {"city": "Paris"}, id="call_1")
    generator = MockChatGenerator([ChatMessage.from_assistant(tool_calls=[call]), "No weather today."])
    ctx = Recorder()
    await from_agent(Agent(chat_generator=generator, tools=[broken_weather]))(ctx.context())
    kinds = [kind for kind, _ in ctx.events]
    assert kinds == ["tool.started", "tool.failed", "delta", "delta", "delta"]
    failed_id, error = ctx.events[1][1]
    assert failed_id == "call_1" and "weather service unavailable" in error


async def test_parallel_calls_assemble_by_index_reasoning_and_usage() -> None:
    ctx = Recorder()
    mapper = ChunkMapper(ctx.context())
    chunks = [
        StreamingChunk("", index=0, reasoning=ReasoningContent("Two cities. ")),
        StreamingChunk("", index=0, tool_calls=[ToolCallDelta(0, "get_weather", '{"ci', "call_a")]),
        StreamingChunk("", index=1, tool_calls=[ToolCallDelta(1, "get_weather", '{"city"', "call_b")]),
        StreamingChunk("", index=0, tool_calls=[ToolCallDelta(0, arguments='ty": "Paris"}')]),
        StreamingChunk("", index=1, tool_calls=[ToolCallDelta(1, arguments=': "Rome"}')]),
    ]
    for chunk in chunks:
        await mapper(chunk)
    assert ctx.events == [("reasoning", "Two cities. ")]  # no call is started before its arguments are whole
    await mapper(StreamingChunk("", finish_reason="tool_calls"))
    await mapper(StreamingChunk("", meta={"usage": {"prompt_tokens": 20, "completion_tokens": 7}}))
    assert ctx.events[1:] == [
        ("tool.started", ("call_a", "get_weather", {"city": "Paris"})),
        ("tool.started", ("call_b", "get_weather", {"city": "Rome"})),
    ]
    assert ctx.usage == [20, 7]


async def test_a_pipeline_streams_and_history_becomes_chat_messages() -> None:
    turns = [
        Turn(role="user", content="Hi", run_id="r1"),
        Turn(role="assistant", content="Hello!", run_id="r1", status="completed"),
        Turn(role="user", content="Where?", run_id="r2"),
        Turn(role="assistant", content="", run_id="r2", status="cancelled"),  # nothing said: left out
    ]
    seen: list[list[ChatMessage]] = []

    def reply(messages: list[ChatMessage]) -> str:
        seen.append(messages)
        return "Paris is sunny."

    pipe = Pipeline()
    pipe.add_component("llm", MockChatGenerator(response_fn=reply))
    ctx = Recorder("And now?", turns)
    run = from_pipeline(pipe, lambda ctx: {"llm": {"messages": history(ctx) + [ChatMessage.from_user(ctx.input)]}})
    await run(ctx.context())
    assert [(m.role.value, m.text) for m in seen[0]] == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "Where?"),
        ("user", "And now?"),
    ]
    assert "".join(text for kind, text in ctx.events if kind == "delta") == "Paris is sunny."


@pytest.fixture
def llm() -> Iterator[str]:
    with fake_openai.serving() as url:
        yield url


def _worker(stack: Stack, llm: str, model: str = "gpt-test") -> Any:
    return stack.worker(
        TOKENTAIL_AGENTS=AGENTS,
        OPENAI_API_KEY=fake_openai.API_KEY,
        OPENAI_BASE_URL=llm,
        TOKENTAIL_EXAMPLE_MODEL=model,
        HAYSTACK_TELEMETRY_ENABLED="False",  # no posthog calls from the tests
    )


async def _start(client: httpx2.AsyncClient) -> Watcher:
    created = await client.post("/v1/sessions", json={"input": QUESTION, "agent": "weather"})
    assert created.status_code == 201, created.text
    return Watcher(client, created.json()["events_url"])


async def test_the_answer_streams_with_the_tool_call_and_usage(stack: Stack, llm: str) -> None:
    url = stack.gateway(TOKENTAIL_AGENTS=AGENTS)
    _worker(stack, llm)
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _start(client)
        await asyncio.wait_for(watcher.follow(), 60)
    seen = watcher.seen
    assert seen.ids == list(range(1, len(seen.ids) + 1))
    kinds = [kind for _, kind, _ in seen.events]
    deltas = kinds.count("message.delta")
    assert kinds == ["run.queued", "run.started", "tool.started", "tool.completed"] + ["message.delta"] * deltas + [
        "run.completed"
    ], kinds
    started = next(data for _, kind, data in seen.events if kind == "tool.started")
    completed = next(data for _, kind, data in seen.events if kind == "tool.completed")
    assert started["name"] == "get_weather" and started["arguments"] == {"city": "Paris"}
    assert completed["call_id"] == started["call_id"] == "call_weather_1"
    assert completed["result"] == fake_openai.WEATHER
    ended = seen.events[-1][2]
    assert ended["output"] == watcher.answer()
    assert ended["output"] == f"The weather tool says: {json.dumps(fake_openai.WEATHER)}."
    # Two model calls, each 20 prompt tokens (fake_openai's usage), from the streams' last chunks.
    assert ended["usage"]["input_tokens"] == 40 and ended["usage"]["output_tokens"] > 0, ended["usage"]
    assert [call.tools for call in fake_openai.calls()] == [["get_weather"]] * 2
    # A follow-up in the same session: the agent is given the session's earlier turns.
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        follow_up = await client.post(f"{watcher.url.removesuffix('/events')}/runs", json={"input": "Thanks!"})
        assert follow_up.status_code == 202, follow_up.text
        await asyncio.wait_for(Watcher(client, watcher.url).follow(), 60)
    sent = [(m["role"], m.get("content")) for m in fake_openai.calls()[-1].messages if m["role"] != "system"]
    assert sent == [("user", QUESTION), ("assistant", ended["output"]), ("user", "Thanks!")]


async def test_a_cancel_mid_answer_stops_the_model_s_stream(stack: Stack, llm: str) -> None:
    url = stack.gateway(TOKENTAIL_AGENTS=AGENTS)
    _worker(stack, llm, model="slow-400")  # 20 s of answer
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _start(client)
        following = asyncio.create_task(watcher.follow())
        await eventually(lambda: watcher.deltas() >= 3, within=60, what="the answer is streaming")
        sid = watcher.url.split("/sessions/")[1].split("/")[0]
        assert (await client.post(f"/v1/sessions/{sid}/cancel")).status_code == 202
        await asyncio.wait_for(following, 30)
    assert watcher.seen.events[-1][1] == "run.cancelled"
    answering = fake_openai.calls()[-1]
    assert answering.messages[-1]["role"] == "tool"  # the answer's stream, after the tool call
    await eventually(lambda: answering.disconnected, within=10, what="the model's stream was closed")
    assert not answering.finished, fake_openai.dumps()


async def test_a_worker_killed_mid_answer_is_taken_over_and_the_run_completes(stack: Stack, llm: str) -> None:
    stack.env["TOKENTAIL_LEASE_MS"] = "2000"
    url = stack.gateway(TOKENTAIL_AGENTS=AGENTS)
    doomed = _worker(stack, llm, model="slow-60")  # 3 s of answer
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _start(client)
        following = asyncio.create_task(watcher.follow())
        await eventually(lambda: watcher.deltas() >= 3, within=60, what="the answer is streaming")
        _worker(stack, llm, model="slow-60")
        doomed.kill()  # SIGKILL mid-answer
        await asyncio.wait_for(following, 60)
    seen = watcher.seen
    kinds = [kind for _, kind, _ in seen.events]
    assert seen.ids == list(range(1, len(seen.ids) + 1))
    assert kinds.count("run.retrying") == 1 and kinds[-1] == "run.completed", kinds
    retried = kinds.index("run.retrying")
    assert kinds[retried:].count("tool.started") == 1 and kinds[retried:].count("tool.completed") == 1
    ended = seen.events[-1][2]
    assert watcher.answer() == ended["output"] and ended["output"].endswith(" word59")
    assert ended["usage"]["input_tokens"] > 0 and ended["usage"]["output_tokens"] > 0
