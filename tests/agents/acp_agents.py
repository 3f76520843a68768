"""Agents for the ACP tests (tests/integration/test_acp.py): ones that ask the editor's program for a file
(`ctx.client_request`: docs/acp.md), and a model-driven one with the editor's tools."""

from tokentail import EDITOR_TOOLS, Agent, ToolError
from tokentail.worker.run.context import RunContext

# The scripted model calls a tool its prompt names ("Please read Notes": read_text_file; "Run the
# command Pytest": run_command), then says what it returned.
CODER = Agent(name="coder", tools=EDITOR_TOOLS, model="scripted")


async def reads_a_file(ctx: RunContext, expires_in: float = 60.0) -> None:
    """Reads the file its input names from the editor, and says what it holds."""
    try:
        read = await ctx.client_request("fs/read_text_file", {"path": ctx.input}, expires_in=expires_in)
    except ToolError as exc:
        await ctx.delta(f"Could not read it: {exc}")
        return
    await ctx.delta(f"It says: {read['content']}")


async def reads_or_gives_up(ctx: RunContext) -> None:
    """`reads_a_file`, waiting a second for an editor."""
    await reads_a_file(ctx, expires_in=1.0)


async def writes_a_large_file(ctx: RunContext) -> None:
    """Writes a large file through the editor, at the path its input names: 100,000 characters (more
    than a third of an event's bound), or for a path with `huge` in it 200,000 (past what a request takes)."""
    content = "x" * (200_000 if "huge" in ctx.input else 100_000)
    try:
        await ctx.client_request("fs/write_text_file", {"path": ctx.input, "content": content})
    except ToolError as exc:
        await ctx.delta(f"Not written: {exc}")
        return
    await ctx.delta("Written.")
