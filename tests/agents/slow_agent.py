"""Agents for tests: one starts a tool call that takes a minute; one blocks the worker's event loop; one
swallows the cancel of its task."""

import asyncio
import time

from tokentail.worker.run.context import RunContext


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


async def cancel_swallowing_agent(ctx: RunContext) -> None:
    """Streams a word every 50 ms for a minute, swallowing a cancel of its task as Python 3.11's
    `asyncio.wait_for` does when the cancel lands as what it waits for completes (cpython gh-86296):
    LangChain's OpenAI model waits for each chunk so."""
    for i in range(1200):
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass
        await ctx.delta(f"word{i} ")
