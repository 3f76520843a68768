"""An agent for tests that streams one event of every kind an agent can make, with agent labels."""

from tokentail.worker.run.context import RunContext


async def every_event(ctx: RunContext) -> None:
    await ctx.reasoning("Thinking it over. ")
    await ctx.reasoning("Look it up first.")
    await ctx.status("Looking it up", agent="researcher")
    await ctx.tool_started("call_1", "lookup", {"q": ctx.input}, agent="researcher")
    await ctx.tool_finished("call_1", result={"found": 3}, agent="researcher")
    await ctx.data("chart", {"points": [1, 2, 3]}, agent="researcher")
    await ctx.delta("Found ", agent="writer")
    await ctx.delta("three.", agent="writer")
