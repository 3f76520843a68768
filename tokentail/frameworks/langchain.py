"""LangChain in a tokentail worker (`pip install tokentail[langchain]`): the session's turns as
LangChain messages, what one streamed message chunk says, and a streaming callback handler written
the way LangChain's tutorials write theirs, so a chain or chat model called in your agent streams
into the run:

    async def support(ctx: RunContext) -> None:
        handler = TokentailCallbackHandler(ctx)
        await chat.ainvoke([*history(ctx), HumanMessage(ctx.input)], config={"callbacks": [handler]})

LangGraph graphs have an adapter of their own (tokentail/frameworks/langgraph.py).
"""

import asyncio
import inspect
import sys
import threading
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, GenerationChunk, LLMResult

from tokentail.frameworks import as_json
from tokentail.worker.agent_errors import BlockingCall
from tokentail.worker.event_sink import EventSink
from tokentail.worker.run.context import RunContext


def history(ctx: RunContext) -> list[BaseMessage]:
    """The session's earlier turns as LangChain messages. Each has an id (its run's, and its role), as
    a graph's state gives its messages: LangGraph then knows them for the input they are, not an
    answer to stream again, if a node returns them."""
    return [
        (HumanMessage if turn.role == "user" else AIMessage)(turn.content, id=f"{turn.run_id}-{turn.role}")
        for turn in ctx.history
        if turn.content
    ]


async def stream_chunk(ctx: EventSink, chunk: AIMessage, agent: str | None = None) -> None:
    """One streamed chunk of a model's message (or a whole message that was not streamed): its text,
    its reasoning, and its usage (which LangChain puts on the last chunk, e.g. with ChatOpenAI's
    `stream_usage=True`). `content_blocks` reads every provider's content the same way (a string, or
    Anthropic's and OpenAI Responses' lists of blocks). Tool calls are not told here: a chunk holds
    fragments of their arguments; the whole call is told once the message is complete. `ctx`: the run,
    or a child run of it (a LangGraph subgraph's)."""
    for block in chunk.content_blocks:
        if block["type"] == "text" and block.get("text"):
            await ctx.delta(block["text"], agent=agent)
        elif block["type"] == "reasoning" and block.get("reasoning"):
            await ctx.reasoning(block["reasoning"], agent=agent)
    if chunk.usage_metadata:
        ctx.add_usage(chunk.usage_metadata["input_tokens"], chunk.usage_metadata["output_tokens"])


class TokentailCallbackHandler(AsyncCallbackHandler):  # type: ignore[misc, unused-ignore]  # Any without LangChain
    """Streams what a LangChain run reports into a tokentail run: tokens, reasoning and usage
    (`on_llm_new_token`: give the model `streaming=True`, or call its `astream`), and tool calls
    (`on_tool_start` ... `on_tool_end`). A model call that did not stream still gives its answer,
    whole, when it ends (`on_llm_end`). `agent` labels every event (a sub-agent's handler).
    Make it inside the agent (it remembers the run's event loop).

    LangChain's synchronous calls (`invoke`, `stream`, `predict`) made in the agent's own code block
    the worker's event loop, and every run on it, for as long as the model answers; the handler,
    which writes on that loop, would wait for it for ever. So a synchronous call on the loop fails
    at once, before the model is asked, saying to use `ainvoke`/`astream` (or `asyncio.to_thread`,
    where it works: the loop stays free). The start hooks are synchronous for that reason: LangChain
    calls them where the call is made (`run_inline`), in its synchronous and its async paths alike."""

    run_inline = True

    def __init__(self, ctx: RunContext, *, agent: str | None = None) -> None:
        self._ctx = ctx
        self._agent = agent
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._call_ids: dict[UUID, str] = {}  # LangChain's run of a tool -> the model's call id
        self._streamed: set[UUID] = set()  # the model runs that gave their answer token by token

    def _refuse_a_blocking_call(self) -> None:
        """Raise if LangChain is being called synchronously on the run's loop: its async paths call
        these hooks from a coroutine, its synchronous ones from plain code."""
        caller = sys._getframe(2)  # LangChain's dispatcher, past this hook
        if threading.get_ident() == self._loop_thread and not caller.f_code.co_flags & inspect.CO_COROUTINE:
            self.raise_error = True  # so that LangChain raises it rather than logging it
            raise BlockingCall(
                "a synchronous LangChain call (invoke, stream, predict) in an async agent would block the worker's "
                "event loop, and every run on it: use ainvoke or astream, or await asyncio.to_thread(...)"
            )

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self._refuse_a_blocking_call()

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self._refuse_a_blocking_call()

    def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
        self._refuse_a_blocking_call()

    async def _on_run_loop(self, event: Coroutine[Any, Any, None]) -> None:
        """LangChain calls async handlers from its sync code paths (a sync tool run in a thread) on
        an event loop of their own: the run's writer lives on the worker's loop, so go there."""
        if asyncio.get_running_loop() is self._loop:
            await event
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(event, self._loop))

    async def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._streamed.add(run_id)
        if isinstance(chunk, ChatGenerationChunk) and isinstance(chunk.message, AIMessageChunk):
            await self._on_run_loop(stream_chunk(self._ctx, chunk.message, self._agent))
        elif isinstance(token, str) and token:  # a completion model's text
            await self._on_run_loop(self._ctx.delta(token, agent=self._agent))

    async def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        if run_id in self._streamed:
            self._streamed.discard(run_id)
            return
        for generation in response.generations[0] if response.generations else []:
            if isinstance(generation, ChatGeneration) and isinstance(generation.message, AIMessage):
                await self._on_run_loop(stream_chunk(self._ctx, generation.message, self._agent))
            elif generation.text:
                await self._on_run_loop(self._ctx.delta(generation.text, agent=self._agent))

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        tool_call_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        call_id = self._call_ids[run_id] = tool_call_id or str(run_id)  # the model's id, given a ToolCall
        arguments = inputs if inputs is not None else {"input": input_str}
        name = (serialized or {}).get("name") or kwargs.get("name") or "tool"
        await self._on_run_loop(self._ctx.tool_started(call_id, name, arguments, agent=self._agent))

    async def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        content = getattr(output, "content", output)  # a ToolMessage, or the tool's own value
        call_id = self._call_ids.pop(run_id, str(run_id))
        if getattr(output, "status", None) == "error":  # a tool with handle_tool_error: its error, as its answer
            await self._on_run_loop(self._ctx.tool_finished(call_id, error=str(content), agent=self._agent))
        else:
            await self._on_run_loop(self._ctx.tool_finished(call_id, result=as_json(content), agent=self._agent))

    async def on_tool_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        call_id = self._call_ids.pop(run_id, str(run_id))
        await self._on_run_loop(self._ctx.tool_finished(call_id, error=error, agent=self._agent))
