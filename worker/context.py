"""RunContext: what an agent sees while it runs, and how it streams.

Built-in agents and your own (`async def my_agent(ctx: RunContext) -> None`) use the same calls:

    await ctx.delta("Hello")                      # text, coalesced into message.delta events
    await ctx.status("Searching the docs...")     # a `status` event
    async with ctx.tool("search", {"q": "x"}) as call:   # tool.started ... tool.completed
        call.result = await search("x")                   # an exception here: tool.failed, then raised
"""

import asyncio
import json
import secrets
import time
from types import TracebackType
from typing import Any

from shared.events import Status, ToolCompleted, ToolFailed, ToolStarted
from shared.records import RunRecord, Turn
from worker.writer import MAX_EVENT_BYTES, EventWriter

PREVIEW_CHARS = 4096  # of a tool result too large for the stream


class ToolScope:
    """One tool call as the stream shows it; set `result` before the block ends."""

    def __init__(self, context: "RunContext", call_id: str, name: str, arguments: dict[str, Any]) -> None:
        self._context = context
        self.call_id = call_id
        self.name = name
        self.arguments = arguments
        self.result: Any = None
        self._started = 0.0

    async def __aenter__(self) -> "ToolScope":
        self._started = time.monotonic()
        await self._context.writer.emit(
            ToolStarted(run_id=self._context.run_id, call_id=self.call_id, name=self.name, arguments=self.arguments)
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration_ms = int((time.monotonic() - self._started) * 1000)
        run_id = self._context.run_id
        if exc is None:
            result = ToolCompleted(run_id=run_id, call_id=self.call_id, result=self.result, duration_ms=duration_ms)
            if len(whole := result.model_dump_json().encode()) > MAX_EVENT_BYTES:
                # The model gets the whole result; the stream shows its beginning.
                preview = json.dumps(self.result, ensure_ascii=False, default=str)[:PREVIEW_CHARS]
                result.result = f"{preview}… (truncated: {len(whole)} bytes)"
            await self._context.writer.emit(result)
        else:
            # A cancelled run (or a stopping worker) ends its tool calls too: say so in the stream.
            cancelled = isinstance(exc, asyncio.CancelledError)
            error = "cancelled" if cancelled else str(exc)[:PREVIEW_CHARS] or type(exc).__name__
            await self._context.writer.emit(
                ToolFailed(run_id=run_id, call_id=self.call_id, error=error, duration_ms=duration_ms)
            )


class RunContext:
    def __init__(self, writer: EventWriter, session_id: str, run: RunRecord, history: list[Turn]) -> None:
        self.writer = writer
        self.session_id = session_id
        self.run_id = run.run_id
        self.input = run.input
        self.params = run.params
        self.attempt = run.attempt
        self.history = history  # earlier completed turns of this session
        self.usage: dict[str, int] = {}

    async def delta(self, text: str) -> None:
        await self.writer.delta(text)

    async def status(self, text: str) -> None:
        await self.writer.emit(Status(run_id=self.run_id, text=text))

    def tool(self, name: str, arguments: dict[str, Any], call_id: str | None = None) -> ToolScope:
        return ToolScope(self, call_id or f"call_{secrets.token_hex(6)}", name, arguments)

    def add_usage(self, input_tokens: int, output_tokens: int) -> None:
        self.usage["input_tokens"] = self.usage.get("input_tokens", 0) + input_tokens
        self.usage["output_tokens"] = self.usage.get("output_tokens", 0) + output_tokens
