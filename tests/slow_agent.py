"""An agent for tests: it starts a tool call that takes a minute."""

import asyncio

from tokentail.worker.context import RunContext


async def slow_tool_agent(ctx: RunContext) -> None:
    await ctx.delta("Searching. ")
    async with ctx.tool("slow_search", {"q": ctx.input}) as call:
        await asyncio.sleep(60)
        call.result = "never"
