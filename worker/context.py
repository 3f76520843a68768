"""RunContext: what an agent sees while it runs, and how it streams.

Built-in agents and your own (`async def my_agent(ctx: RunContext) -> None`) use the same calls:

    await ctx.delta("Hello")                      # answer text, coalesced into message.delta events
    await ctx.reasoning("The user wants...")      # thinking text, apart from the answer (reasoning.delta)
    await ctx.status("Searching the docs...")     # a `status` event
    await ctx.data("chart", {"points": [1, 2]})   # a `data.chart` event: your own JSON, for your UI
    async with ctx.tool("search", {"q": "x"}) as call:   # tool.started ... tool.completed
        call.result = await search("x")                   # an exception here: tool.failed, then raised

Frameworks report a tool's start and its end as two callbacks, not one scope: for them,
`ctx.tool_started(call_id, name, arguments)` and later `ctx.tool_finished(call_id, result=...)` (or
`error=...`). Every call takes `agent=`: the sub-agent or branch the event comes from, when several
stream into one run side by side.
"""

import asyncio
import json
import re
import secrets
import time
from types import TracebackType
from typing import Any

from shared.events import DATA_NAME, CustomData, Status, ToolCompleted, ToolFailed, ToolStarted
from shared.records import RunRecord, Turn
from worker.writer import MAX_EVENT_BYTES, EventWriter

PREVIEW_CHARS = 4096  # of a tool result too large for the stream


class ToolScope:
    """One tool call as the stream shows it; set `result` before the block ends."""

    def __init__(
        self, context: "RunContext", call_id: str, name: str, arguments: dict[str, Any], agent: str | None
    ) -> None:
        self._context = context
        self.call_id = call_id
        self.name = name
        self.arguments = arguments
        self.agent = agent
        self.result: Any = None

    async def __aenter__(self) -> "ToolScope":
        await self._context.tool_started(self.call_id, self.name, self.arguments, agent=self.agent)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self._context.tool_finished(self.call_id, result=self.result, agent=self.agent)
        else:
            await self._context.tool_finished(self.call_id, error=exc, agent=self.agent)


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
        self._tools_started: dict[str, float] = {}  # call id -> when it started

    async def delta(self, text: str, *, agent: str | None = None) -> None:
        await self.writer.delta(text, agent)

    async def reasoning(self, text: str, *, agent: str | None = None) -> None:
        await self.writer.reasoning(text, agent)

    async def status(self, text: str, *, agent: str | None = None) -> None:
        await self.writer.emit(Status(run_id=self.run_id, text=text, agent=agent))

    async def data(self, name: str, data: Any, *, agent: str | None = None) -> None:
        """A `data.<name>` event holding `data` (any JSON value); `name`: letters, digits, - and _."""
        if not re.match(DATA_NAME, name):
            raise ValueError(f"data event names are 1-64 letters, digits, '-' or '_', not {name!r}")
        await self.writer.emit(CustomData(run_id=self.run_id, name=name, data=data, agent=agent))

    def tool(
        self, name: str, arguments: dict[str, Any], call_id: str | None = None, *, agent: str | None = None
    ) -> ToolScope:
        return ToolScope(self, call_id or f"call_{secrets.token_hex(6)}", name, arguments, agent)

    async def tool_started(
        self, call_id: str, name: str, arguments: dict[str, Any], *, agent: str | None = None
    ) -> None:
        self._tools_started[call_id] = time.monotonic()
        await self.writer.emit(
            ToolStarted(run_id=self.run_id, call_id=call_id, name=name, arguments=arguments, agent=agent)
        )

    async def tool_finished(
        self,
        call_id: str,
        *,
        result: Any = None,
        error: str | BaseException | None = None,
        agent: str | None = None,
    ) -> None:
        """`tool.completed` with `result`, or `tool.failed` with `error`; a call whose start this
        context did not see is reported with a duration of 0."""
        started = self._tools_started.pop(call_id, None)
        duration_ms = int((time.monotonic() - started) * 1000) if started is not None else 0
        if error is None:
            completed = ToolCompleted(
                run_id=self.run_id, call_id=call_id, result=result, duration_ms=duration_ms, agent=agent
            )
            if len(whole := completed.model_dump_json().encode()) > MAX_EVENT_BYTES:
                # The model gets the whole result; the stream shows its beginning.
                preview = json.dumps(result, ensure_ascii=False, default=str)[:PREVIEW_CHARS]
                completed.result = f"{preview}… (truncated: {len(whole)} bytes)"
            await self.writer.emit(completed)
            return
        if isinstance(error, BaseException):
            # A cancelled run (or a stopping worker) ends its tool calls too: say so in the stream.
            cancelled = isinstance(error, asyncio.CancelledError)
            error = "cancelled" if cancelled else str(error)[:PREVIEW_CHARS] or type(error).__name__
        await self.writer.emit(
            ToolFailed(run_id=self.run_id, call_id=call_id, error=error, duration_ms=duration_ms, agent=agent)
        )

    def add_usage(self, input_tokens: int, output_tokens: int) -> None:
        self.usage["input_tokens"] = self.usage.get("input_tokens", 0) + input_tokens
        self.usage["output_tokens"] = self.usage.get("output_tokens", 0) + output_tokens
