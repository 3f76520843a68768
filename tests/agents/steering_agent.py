"""Agents for the steering tests: one that takes steers in where it stops (at its gate), one that
never does."""

from tests.support.gates import gate
from tokentail.worker.run.context import RunContext


async def listening(ctx: RunContext) -> None:
    await ctx.delta("Working.")
    await gate(ctx)  # the test steers meanwhile, then lets it go on
    for text in await ctx.steers():
        await ctx.delta(f" Taken in: {text}.")


async def deaf(ctx: RunContext) -> None:
    await ctx.delta("Working.")
    await gate(ctx)


async def listening_then_held(ctx: RunContext) -> None:
    """As `listening`, then waits at a second gate ("after"): its run goes on past the steer."""
    await listening(ctx)
    await gate(ctx, "after")


async def remembering(ctx: RunContext) -> None:
    """`listening` on its first run; on a later one, it says the user turns of its history (the
    steers its earlier runs took in among them)."""
    if not ctx.history:
        await listening(ctx)
        return
    said = [turn.content for turn in ctx.history if turn.role == "user"]
    await ctx.delta("I was told: " + " | ".join(said))
