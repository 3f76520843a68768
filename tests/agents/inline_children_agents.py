"""Agents for tests of inline children (docs/subagents-frameworks.md): sub-agents shown as child runs
from inside the parent's own code."""

from tokentail.worker.run.context import RunContext


async def asks_between_children(ctx: RunContext) -> None:
    """One child that ends, one still open while the run asks a question (the run goes on from its
    record after the answer: both children are opened again)."""
    await ctx.delta("Before. ")
    async with await ctx.subagent("one", call_id="c1", input="x") as one:
        await one.delta("one's answer")
    two = await ctx.subagent("two", call_id="c2", input="y")
    await two.delta("two starts")
    answer = await ctx.ask("Go on?")
    await two.delta(f" and goes on with {answer}")
    await two.end()
    await ctx.delta("After.")
