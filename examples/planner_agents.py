"""Child runs (docs/subagents.md): a planner that asks two researchers at once, each a child run.

Register both agents, on the workers and the gateways, and name the planner when creating a session:

    TOKENTAIL_AGENTS='{"planner": "examples.planner_agents:planner",
                       "researcher": "examples.planner_agents:researcher"}' .venv/bin/tokentail dev

The researcher answers offline, from what it knows here; yours would call a model or a search.
"""

import asyncio

from tokentail import RunContext

KNOWN = {
    "What causes tides?": "The Moon's gravity, and the Sun's, pulling on the oceans.",
    "How far is the moon?": "About 384,400 km on average.",
}


async def researcher(ctx: RunContext) -> None:
    """Answers one question: its input."""
    await ctx.delta(KNOWN.get(ctx.input, f"I could not find out: {ctx.input}"))


async def planner(ctx: RunContext) -> None:
    """Asks two researchers at once (two child runs, started side by side), then answers with both."""
    await ctx.delta("Asking two researchers. ")
    tides, moon = await asyncio.gather(
        ctx.spawn("researcher", "What causes tides?", call_id="tides"),
        ctx.spawn("researcher", "How far is the moon?", call_id="moon"),
    )
    await ctx.delta(f"{tides.output}\n{moon.output}")
