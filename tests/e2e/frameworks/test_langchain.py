"""The LangChain part of the LangGraph adapter (tokentail/frameworks/langchain.py), in process and with
the `langchain` extra alone (no LangGraph): the session's turns as messages, the callback handler the
tutorials' way (tokens, usage, a tool call with the model's id, its result or its error, a handler
called from another thread), on a LangChain fake chat model. Its end-to-end test, a chat model
streaming through this handler in real gateway and worker processes, is in test_langgraph.py."""

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.messages.tool import tool_call_chunk  # noqa: E402
from langchain_core.outputs import ChatGenerationChunk  # noqa: E402
from langchain_core.runnables import RunnableConfig  # noqa: E402
from langchain_core.tools import ToolException, tool  # noqa: E402

from tests.unit.worker.writes.test_writer import RecordingLease, _writer  # noqa: E402
from tokentail import BlockingCall  # noqa: E402
from tokentail.frameworks.langchain import TokentailCallbackHandler, history  # noqa: E402
from tokentail.shared.vocabulary.records import RunRecord, Turn  # noqa: E402
from tokentail.worker.run.context import RunContext  # noqa: E402

SEEN: list[list[BaseMessage]] = []  # what the fake model was asked, call by call


class StreamingFakeChatModel(GenericFakeChatModel):  # type: ignore[misc]  # Any where LangChain is not installed
    """GenericFakeChatModel drops a message's tool calls and usage when it streams: this one streams
    the text word by word, then the tool calls and the usage in a last chunk, as OpenAI's stream ends.
    `streaming=True` has `ainvoke` stream too, as with ChatOpenAI."""

    streaming: bool = False

    def _stream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        SEEN.append(list(messages))
        message = next(self.messages)
        for word in re.split(r"(\s)", message.text):
            if word:
                yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        calls = [
            tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=index)
            for index, call in enumerate(message.tool_calls)
        ]
        last = AIMessageChunk(content="", tool_call_chunks=calls, usage_metadata=message.usage_metadata)
        yield ChatGenerationChunk(message=last)

    def bind_tools(self, tools: Any, **kwargs: Any) -> "StreamingFakeChatModel":
        return self


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}


def weather_call(call_id: str = "call_1", city: str = "Paris") -> AIMessage:
    call = {"id": call_id, "name": "get_weather", "args": {"city": city}}
    return AIMessage("", tool_calls=[call], usage_metadata=usage(10, 5))


@tool  # type: ignore[untyped-decorator]  # Any where LangChain is not installed
def get_weather(city: str) -> dict[str, object]:
    """The current weather in a city."""
    if city == "Atlantis":
        raise ValueError("no such city")
    return {"city": city, "sky": "sunny"}


def context(
    history: list[Turn] | None = None, question: str = "Weather in Paris?"
) -> tuple[RunContext, RecordingLease]:
    lease = RecordingLease()
    return RunContext(_writer(lease, 0), "s", RunRecord(run_id="r", input=question), history=history or []), lease


def test_the_session_s_turns_become_human_and_ai_messages() -> None:
    ctx, _ = context(
        [
            Turn(role="user", content="Hi", run_id="r1"),
            Turn(role="assistant", content="Hello!", run_id="r1", status="completed"),
            Turn(role="user", content="And?", run_id="r2"),
            Turn(role="assistant", content="", run_id="r2", status="failed"),  # nothing was said
        ]
    )
    converted = history(ctx)
    assert [(type(m), m.content, m.id) for m in converted] == [  # ids: LangGraph knows them as input
        (HumanMessage, "Hi", "r1-user"),
        (AIMessage, "Hello!", "r1-assistant"),
        (HumanMessage, "And?", "r2-user"),
    ]


async def test_the_callback_handler_streams_tokens_usage_and_the_tool_call() -> None:
    SEEN.clear()
    replies = iter([weather_call(), AIMessage("Sunny in Paris.", usage_metadata=usage(20, 4))])
    model = StreamingFakeChatModel(messages=replies, streaming=True)
    ctx, lease = context(
        [Turn(role="user", content="Hi", run_id="r1"), Turn(role="assistant", content="Hello!", run_id="r1")]
    )
    config = {"callbacks": [TokentailCallbackHandler(ctx)]}
    messages: list[BaseMessage] = [*history(ctx), HumanMessage(ctx.input)]
    while True:  # the tutorials' loop: the model, then the tools it calls
        reply = await model.ainvoke(messages, config=config)
        messages.append(reply)
        if not reply.tool_calls:
            break
        messages.extend([await get_weather.ainvoke(call, config=config) for call in reply.tool_calls])
    await ctx.this_attempt.writer.flush()

    kinds = [kind for kind, _ in lease.events]  # the writer may join tokens into fewer deltas
    assert kinds[:2] == ["tool.started", "tool.completed"] and set(kinds[2:]) == {"message.delta"}, kinds
    started, completed = lease.events[0][1], lease.events[1][1]
    assert started["call_id"] == completed["call_id"] == "call_1"  # the model's id, not LangChain's run id
    assert started["name"] == "get_weather" and started["arguments"] == {"city": "Paris"}
    assert completed["result"] == {"city": "Paris", "sky": "sunny"}
    assert "".join(lease.texts()) == "Sunny in Paris."
    assert ctx.this_attempt.meter.usage == {"input_tokens": 30, "output_tokens": 9}
    assert [m.content for m in SEEN[0]] == ["Hi", "Hello!", "Weather in Paris?"]
    assert isinstance(SEEN[1][-1], ToolMessage)


async def test_a_tool_that_raises_is_a_failed_call() -> None:
    ctx, lease = context()
    config = {"callbacks": [TokentailCallbackHandler(ctx)]}
    call = {"id": "call_9", "name": "get_weather", "args": {"city": "Atlantis"}, "type": "tool_call"}
    with pytest.raises(ValueError, match="no such city"):
        await get_weather.ainvoke(call, config=config)
    await ctx.this_attempt.writer.flush()
    assert [(kind, data["call_id"]) for kind, data in lease.events] == [
        ("tool.started", "call_9"),
        ("tool.failed", "call_9"),
    ]
    assert lease.events[1][1]["error"] == "no such city"


async def test_a_tool_that_answers_its_error_is_a_failed_call() -> None:
    # A tool with `handle_tool_error`: the model is answered with the error, a ToolMessage whose
    # status is "error"; the stream says the call failed. The handler's `agent` labels its events.
    @tool  # type: ignore[untyped-decorator, unused-ignore]  # Any without LangChain
    def get_forecast(city: str) -> str:
        """Tomorrow's weather in a city."""
        raise ToolException(f"no forecast for {city}")

    get_forecast.handle_tool_error = True

    ctx, lease = context()
    config: RunnableConfig = {"callbacks": [TokentailCallbackHandler(ctx, agent="forecaster")]}
    call = {"id": "call_7", "name": "get_forecast", "args": {"city": "Paris"}, "type": "tool_call"}
    answer = await get_forecast.ainvoke(call, config=config)
    await ctx.this_attempt.writer.flush()
    assert isinstance(answer, ToolMessage) and answer.status == "error"
    assert [(kind, data["call_id"], data["agent"]) for kind, data in lease.events] == [
        ("tool.started", "call_7", "forecaster"),
        ("tool.failed", "call_7", "forecaster"),
    ]
    assert lease.events[1][1]["error"] == "no forecast for Paris"


async def test_a_model_call_that_does_not_stream_still_gives_its_answer_whole() -> None:
    # Without `streaming=True`, `ainvoke` does not stream: no tokens, so the answer comes whole
    # when the model's call ends (on_llm_end), with its usage.
    model = StreamingFakeChatModel(messages=iter([AIMessage("Sunny.", usage_metadata=usage(7, 2))]))
    ctx, lease = context()
    await model.ainvoke([HumanMessage(ctx.input)], config={"callbacks": [TokentailCallbackHandler(ctx)]})
    await ctx.this_attempt.writer.flush()
    assert lease.texts() == ["Sunny."] and ctx.this_attempt.meter.usage == {"input_tokens": 7, "output_tokens": 2}


async def test_a_handler_called_from_another_thread_writes_on_the_run_s_loop() -> None:
    # LangChain runs an async handler on a loop of its own when its caller is sync code in a thread.
    ctx, lease = context()
    handler = TokentailCallbackHandler(ctx)
    chunk = ChatGenerationChunk(message=AIMessageChunk(content="from a thread"))
    await asyncio.to_thread(asyncio.run, handler.on_llm_new_token("from a thread", chunk=chunk, run_id=uuid.uuid4()))
    await ctx.this_attempt.writer.flush()
    assert lease.texts() == ["from a thread"]


@pytest.mark.timeout(20)  # it hung for ever: the handler waited for the loop the call was blocking
async def test_a_synchronous_model_call_in_an_async_agent_fails_at_once_saying_what_to_use() -> None:
    ctx, lease = context()
    handler = TokentailCallbackHandler(ctx)
    # The tutorials' style: the handler on the model, `invoke`, from the agent's own (async) code.
    model = StreamingFakeChatModel(messages=iter([AIMessage("Sunny.")]), streaming=True, callbacks=[handler])
    asked = len(SEEN)  # (other tests of this process ask it too: only this call counts)
    with pytest.raises(BlockingCall, match="use ainvoke or astream"):
        model.invoke([HumanMessage(ctx.input)])
    assert len(SEEN) == asked  # the model was not even asked
    # In a thread the loop stays free, and the same call streams.
    model = StreamingFakeChatModel(messages=iter([AIMessage("Sunny in Paris.")]), streaming=True, callbacks=[handler])
    reply = await asyncio.to_thread(model.invoke, [HumanMessage(ctx.input)])
    await ctx.this_attempt.writer.flush()
    assert reply.content == "".join(lease.texts()) == "Sunny in Paris."


async def test_a_tool_s_text_stays_text_and_its_object_an_object() -> None:
    # One rule in every adapter: "4" was shown as the number 4 here and as "4" elsewhere.
    @tool  # type: ignore[untyped-decorator, unused-ignore]  # Any without LangChain
    def count(city: str) -> str:
        """How many cities there are with this name."""
        return "4"

    ctx, lease = context()
    config = {"callbacks": [TokentailCallbackHandler(ctx)]}
    for call_id, tool_ in (("call_1", count), ("call_2", get_weather)):
        await tool_.ainvoke(
            {"id": call_id, "name": tool_.name, "args": {"city": "Paris"}, "type": "tool_call"}, config=config
        )
    await ctx.this_attempt.writer.flush()
    results = [data["result"] for kind, data in lease.events if kind == "tool.completed"]
    assert results == ["4", {"city": "Paris", "sky": "sunny"}]
