"""A Haystack agent (examples/haystack_agent.py, unchanged) in real gateway and worker processes,
its OpenAIChatGenerator streaming from the local fake OpenAI server; first, the chunk mapping in
process, driven by Haystack's own MockChatGenerator. (In this file, not tests/unit: the unit tier's
conftest needs fakeredis, which the framework's environment does not have.)"""

import asyncio
import json
import os
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # read when haystack is imported
pytest.importorskip("haystack")

from haystack import Pipeline, component  # noqa: E402
from haystack.components.agents import Agent  # noqa: E402
from haystack.components.generators.chat import MockChatGenerator  # noqa: E402
from haystack.dataclasses import ChatMessage, ReasoningContent, StreamingChunk, ToolCall  # noqa: E402
from haystack.dataclasses.streaming_chunk import ToolCallDelta  # noqa: E402
from haystack.tools.from_function import create_tool_from_function  # noqa: E402

from tests.clients.sse_client import read_events  # noqa: E402
from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks import fake_openai  # noqa: E402
from tests.e2e.frameworks.scenarios import (  # noqa: E402
    QUESTION,
    Example,
    answer_with_the_weather_tool,
    cancel_mid_answer,
    worker_killed_mid_answer,
)
from tests.support.sessions import waiting_for_input  # noqa: E402
from tokentail.frameworks.haystack import ChunkMapper, from_agent, from_pipeline, history  # noqa: E402
from tokentail.shared.vocabulary.records import Turn  # noqa: E402
from tokentail.worker.run.context import RunContext  # noqa: E402

AGENTS = '{"weather": "examples.haystack_agent:weather"}'


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


@component  # type: ignore[untyped-decorator, misc, unused-ignore]  # Any where Haystack is not installed
class Answerer:
    """A tutorial's first custom component: it calls a generator and returns its reply, not streaming."""

    def __init__(self) -> None:
        self.generator = MockChatGenerator(["Paris is sunny today."])

    @component.output_types(replies=list[ChatMessage])  # type: ignore[untyped-decorator, unused-ignore]
    def run(self, question: str) -> dict[str, Any]:
        return {"replies": self.generator.run([ChatMessage.from_user(question)])["replies"]}


async def test_a_pipeline_whose_reply_does_not_stream_answers_with_the_pipeline_s_result() -> None:
    # Nothing streamed, so the answer was empty: the reply is in the pipeline's result.
    pipe = Pipeline()
    pipe.add_component("answerer", Answerer())
    ctx = Recorder("Weather in Paris?")
    await from_pipeline(pipe, lambda ctx: {"answerer": {"question": ctx.input}})(ctx.context())
    assert ctx.events == [("delta", "Paris is sunny today.")]


async def test_the_agent_s_own_streaming_callbacks_still_get_every_chunk() -> None:
    # A tutorial's agent prints as it streams (print_streaming_chunk): the run's mapper no longer replaces it.
    printed: list[str] = []
    generator = MockChatGenerator(["It is sunny."], streaming_callback=lambda chunk: printed.append("generator"))
    agent = Agent(chat_generator=generator, tools=[get_weather], streaming_callback=lambda c: printed.append(c.content))
    ctx = Recorder()
    await from_agent(agent)(ctx.context())
    assert ctx.events == [("delta", "It "), ("delta", "is "), ("delta", "sunny.")]
    assert [text for text in printed if text != "generator"] == ["It ", "is ", "sunny."], printed


@component  # type: ignore[untyped-decorator, misc, unused-ignore]
class Responder:
    """The tutorial's custom component (seed 000's steps 1-2): it wraps a chat generator and answers
    with `reply: str`, not `replies`; it does not stream."""

    def __init__(self) -> None:
        self.llm = MockChatGenerator(["Paris is sunny today."])

    @component.output_types(reply=str)  # type: ignore[untyped-decorator, unused-ignore]
    def run(self, question: str) -> dict[str, Any]:
        return {"reply": self.llm.run([ChatMessage.from_user(question)])["replies"][0].text}


@component  # type: ignore[untyped-decorator, misc, unused-ignore]
class Outputs:
    """A component whose outputs are given: each test names them and their values."""

    def __init__(self, **outputs: Any) -> None:
        self.outputs = outputs
        component.set_output_types(self, **{name: type(value) for name, value in outputs.items()})

    def run(self, question: str) -> dict[str, Any]:
        return dict(self.outputs)


def _pipeline(**components: Any) -> Pipeline:
    pipe = Pipeline()
    for name, instance in components.items():
        pipe.add_component(name, instance)
    return pipe


async def _answer(pipe: Pipeline, output: str | None = None) -> list[tuple[str, Any]]:
    ctx = Recorder("Weather in Paris?")
    inputs = {name: {"question": ctx.input} for name in pipe.graph.nodes}
    named = {} if output is None else {"output": output}
    await from_pipeline(pipe, lambda ctx: inputs, **named)(ctx.context())
    return ctx.events


async def test_a_custom_component_s_reply_named_as_it_likes_is_the_answer() -> None:
    # Seed 000: the answer was "" (only an output named `replies` was read), with nothing said.
    assert await _answer(_pipeline(responder=Responder())) == [("delta", "Paris is sunny today.")]


@pytest.mark.parametrize(
    "value",
    [
        "Sunny.",
        ChatMessage.from_assistant("Sunny."),
        ["Cloudy.", "Sunny."],
        [ChatMessage.from_user("Weather?"), ChatMessage.from_assistant("Sunny.")],
    ],
    ids=["str", "ChatMessage", "list of str", "list of ChatMessage"],
)
async def test_a_text_output_of_any_name_and_shape_is_the_answer(value: Any) -> None:
    outputs = Outputs(answer=value, documents=[{"id": 1}], score=0.5)  # only one of them is text
    assert await _answer(_pipeline(responder=outputs)) == [("delta", "Sunny.")]


async def test_the_output_named_is_the_answer_among_several() -> None:
    pipe = _pipeline(draft=Outputs(text="Maybe rain."), responder=Outputs(reply="Sunny."))
    assert await _answer(pipe, output="responder.reply") == [("delta", "Sunny.")]
    with pytest.raises(ValueError, match=r"several text outputs: draft\.text, responder\.reply.*output="):
        await _answer(pipe)  # which one is meant cannot be guessed: it says how to name it
    with pytest.raises(ValueError, match=r"no output responder\.answer.*draft\.text, responder\.reply"):
        await _answer(pipe, output="responder.answer")


async def test_an_output_of_the_same_text_twice_is_one_answer() -> None:
    # An Agent as a pipeline component answers with `messages` and `last_message`, the same text.
    reply = ChatMessage.from_assistant("Sunny.")
    outputs = Outputs(messages=[ChatMessage.from_user("Weather?"), reply], last_message=reply)
    assert await _answer(_pipeline(agent=outputs)) == [("delta", "Sunny.")]


async def test_a_pipeline_with_no_text_output_answers_nothing() -> None:
    # The run then says so (worker/run/job.py: a status before run.completed), as for every agent.
    assert await _answer(_pipeline(scorer=Outputs(score=0.5))) == []


@component  # type: ignore[untyped-decorator, misc, unused-ignore]
class StreamingResponder:
    """A custom component that streams, as Haystack allows it: a `run_async` with a
    `streaming_callback` input, handed to the generator it wraps."""

    def __init__(self) -> None:
        self.llm = MockChatGenerator(["Paris is sunny today."])

    @component.output_types(reply=str)  # type: ignore[untyped-decorator, unused-ignore]
    def run(self, question: str, streaming_callback: Any = None) -> dict[str, Any]:
        raise AssertionError("Pipeline.stream runs the async path")

    @component.output_types(reply=str)  # type: ignore[untyped-decorator, unused-ignore]
    async def run_async(self, question: str, streaming_callback: Any = None) -> dict[str, Any]:
        result = await self.llm.run_async([ChatMessage.from_user(question)], streaming_callback=streaming_callback)
        return {"reply": result["replies"][0].text}


async def test_a_custom_component_with_a_streaming_callback_input_streams_its_generator() -> None:
    # Streamed word by word, and not sent again whole from the result.
    assert await _answer(_pipeline(responder=StreamingResponder())) == [
        ("delta", "Paris "), ("delta", "is "), ("delta", "sunny "), ("delta", "today.")
    ]  # fmt: skip


@pytest.fixture
def example(stack: Stack, llm: str) -> Example:
    return Example(stack, llm, AGENTS, {"HAYSTACK_TELEMETRY_ENABLED": "False"})


async def test_the_answer_streams_with_the_tool_call_and_usage(example: Example) -> None:
    events = await answer_with_the_weather_tool(example)
    ended = events[-1][2]
    assert ended["output"] == f"The weather tool says: {json.dumps(fake_openai.WEATHER)}."
    # Two model calls, each 20 prompt tokens (fake_openai's usage), from the streams' last chunks.
    assert ended["usage"]["input_tokens"] == 40, ended["usage"]


async def test_haystack_takes_the_run_s_callback_for_the_async_one_it_is_and_warns_nothing(
    example: Example, tmp_path: Path
) -> None:
    # Haystack tells an async streaming callback by inspect.iscoroutinefunction, which an object with
    # an async __call__ fails: the worker logged "A sync streaming callback was provided at runtime
    # ... may block it" for the agent and for each model call, three times for this run.
    url = example.gateway()
    example.env["TOKENTAIL_LOG_LEVEL"] = "info"
    log = tmp_path / "worker.log"
    example.worker(output=log)
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        made = (await client.post("/v1/sessions", json={"input": QUESTION, "agent": "weather"})).json()
        received = await read_events(client, made["events_url"])
    assert [kind for _, kind, _ in received.events][-1] == "run.completed"
    logged = log.read_text()
    assert f"run {made['run_id']} of session {made['session_id']} started" in logged  # its log is here
    assert "streaming callback" not in logged, logged


async def test_a_cancel_mid_answer_stops_the_model_s_stream(example: Example) -> None:
    await cancel_mid_answer(example)


async def test_a_worker_killed_mid_answer_is_taken_over_and_the_run_completes(example: Example) -> None:
    await worker_killed_mid_answer(example)


@pytest.mark.parametrize("approved", [True, False])
async def test_a_confirmation_hook_asks_through_tokentail_and_any_worker_goes_on(
    example: Example, approved: bool
) -> None:
    # The example's careful agent asks before get_weather (Haystack's ConfirmationHook, AskTokentail):
    # its worker is killed while the question waits; another worker goes on with the answer.
    example.agents = '{"careful": "examples.haystack_agent:careful_weather"}'
    url = example.gateway()
    asker = example.worker()
    await asyncio.to_thread(example.stack.wait_for_workers, 1)
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        made = (await client.post("/v1/sessions", json={"input": QUESTION, "agent": "careful"})).json()
        sid, rid = made["session_id"], made["run_id"]

        pending = (await waiting_for_input(client, f"/v1/sessions/{sid}", within=30))["pending_input"]
        assert pending["prompt"] == 'Run get_weather with {"city": "Paris"}?'
        assert (pending["kind"], pending["call_id"]) == ("approval", "call_weather_1")
        asker.kill()
        asker.wait()
        example.worker()
        await asyncio.to_thread(example.stack.wait_for_workers, 1)
        answer = {"approved": True} if approved else {"approved": False, "reason": "not now"}
        sent = await client.post(
            f"/v1/sessions/{sid}/runs/{rid}/input", json={"input_id": pending["input_id"], "answer": answer}
        )
        assert sent.status_code == 202, sent.text
        received = await read_events(client, made["events_url"])
    kinds = [kind for _, kind, _ in received.events]
    ended = "tool.completed" if approved else "tool.failed"
    assert kinds[: kinds.index("input.received") + 1] == [
        "run.queued", "run.started", "tool.started", "input.required", "input.received"
    ]  # fmt: skip
    assert kinds.count("tool.started") == 1 and kinds.count(ended) == 1 and "run.retrying" not in kinds
    assert received.ids == list(range(1, len(kinds) + 1))
    result = json.dumps(fake_openai.WEATHER) if approved else "The user denied get_weather: not now"
    assert received.events[-1][1] == "run.completed"
    assert received.events[-1][2]["output"] == f"The weather tool says: {result}."
