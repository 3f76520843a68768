"""Agents for tests: one starts a tool call that takes a minute; one blocks the worker's event loop."""

import asyncio
import time

from tokentail.worker.context import RunContext


async def slow_tool_agent(ctx: RunContext) -> None:
    await ctx.delta("Searching. ")
    async with ctx.tool("slow_search", {"q": ctx.input}) as call:
        await asyncio.sleep(60)
        call.result = "never"


async def blocking_agent(ctx: RunContext) -> None:
    """Makes the mistake the worker's watchdog is for: a synchronous call in async code, for `input` seconds."""
    await ctx.delta("Before. ")
    time.sleep(float(ctx.input))  # noqa: ASYNC251
    await ctx.delta("After.")


async def raising_tool_agent(ctx: RunContext) -> None:
    """Reports a tool's start as a framework does (two callbacks, not a scope), then the tool raises out."""
    await ctx.tool_started("call_1", "get_weather", {"city": "Paris"})
    raise RuntimeError("weather service unavailable")
