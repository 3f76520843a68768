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
import json
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk

from worker.context import RunContext


def history(ctx: RunContext) -> list[BaseMessage]:
    """The session's earlier turns as LangChain messages."""
    return [
        HumanMessage(turn.content) if turn.role == "user" else AIMessage(turn.content)
        for turn in ctx.history
        if turn.content
    ]


async def stream_chunk(ctx: RunContext, chunk: AIMessage, agent: str | None = None) -> None:
    """One streamed chunk of a model's message (or a whole message, sent once): its text, its
    reasoning, and its usage (which LangChain puts on the last chunk, e.g. with ChatOpenAI's
    `stream_usage=True`)."""
    for block in chunk.content_blocks:
        if block["type"] == "text" and block.get("text"):
            await ctx.delta(block["text"], agent=agent)
        elif block["type"] == "reasoning" and block.get("reasoning"):
            await ctx.reasoning(block["reasoning"], agent=agent)
    if chunk.usage_metadata:
        ctx.add_usage(chunk.usage_metadata["input_tokens"], chunk.usage_metadata["output_tokens"])


def jsonable(value: Any) -> Any:
    """A tool's result as the stream can hold it: JSON as it is, text parsed if it is JSON."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


class TokentailCallbackHandler(AsyncCallbackHandler):  # type: ignore[misc]  # Any where LangChain is not installed
    """Streams what a LangChain run reports into a tokentail run: tokens, reasoning and usage
    (`on_llm_new_token`: give the model `streaming=True`), and tool calls (`on_tool_start` ...
    `on_tool_end`)."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._call_ids: dict[UUID, str] = {}  # LangChain's run of a tool -> the model's call id

    async def _on_run_loop(self, event: Coroutine[Any, Any, None]) -> None:
        """LangChain calls async handlers from its sync code paths (a sync tool run in a thread) on
        an event loop of their own: the run's writer lives on the worker's loop, so go there."""
        if asyncio.get_running_loop() is self._loop:
            await event
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(event, self._loop))

    async def on_llm_new_token(
        self,
        token: str,
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(chunk, ChatGenerationChunk) and isinstance(chunk.message, AIMessageChunk):
            await self._on_run_loop(stream_chunk(self._ctx, chunk.message))
        elif token:
            await self._on_run_loop(self._ctx.delta(token))

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
        await self._on_run_loop(self._ctx.tool_started(call_id, serialized.get("name") or "tool", arguments))

    async def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        content = getattr(output, "content", output)  # a ToolMessage, or the tool's own value
        call_id = self._call_ids.pop(run_id, str(run_id))
        await self._on_run_loop(self._ctx.tool_finished(call_id, result=jsonable(content)))

    async def on_tool_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        call_id = self._call_ids.pop(run_id, str(run_id))
        await self._on_run_loop(self._ctx.tool_finished(call_id, error=error))
