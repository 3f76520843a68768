"""Agents that say what they are (tokentail.describe): arguments of their own, a task always; one that
fails as an agent's own error does, one that a bound of tokentail's fails."""

from tokentail import RunContext, describe
from tokentail.shared.vocabulary.events import MAX_EVENT_BYTES


async def _add(ctx: RunContext) -> None:
    await ctx.delta(str(ctx.arguments["a"] + ctx.arguments["b"]))


add = describe(
    _add,
    description="Adds two numbers.",
    input_schema={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
    task_support="required",
)


async def failing(ctx: RunContext) -> None:
    """Fails as an agent's own error does."""
    raise RuntimeError("the job failed")


async def too_large(ctx: RunContext) -> None:
    """Sends an event over tokentail's bound."""
    await ctx.data("blob", "x" * MAX_EVENT_BYTES)
