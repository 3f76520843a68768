"""Agents for tests that show little or nothing: what a run says when its agent answers nothing."""

from tokentail.worker.run.context import RunContext


async def silent(ctx: RunContext) -> None:
    """Returns without streaming anything: the empty answer of a framework whose reply was lost."""


async def thinking_only(ctx: RunContext) -> None:
    """Says how it goes and thinks, and then answers nothing."""
    await ctx.status("Thinking...")
    await ctx.reasoning("The user wants something; I will not say what.")


async def tool_only(ctx: RunContext) -> None:
    """Its answer is a tool call's result, which a UI shows: no text needed."""
    async with ctx.tool("find_order", {"order_id": "A-1001"}) as call:
        call.result = {"status": "shipped"}


async def data_only(ctx: RunContext) -> None:
    """Its answer is a data event, which a UI renders: no text needed."""
    await ctx.data("chart", {"points": [1, 2, 3]})
