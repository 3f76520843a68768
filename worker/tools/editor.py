"""The editor's files and terminal as tools, for a model-driven agent a code editor talks to over ACP
(docs/acp.md): each call is a request the run sends the editor connected to its session
(`RunContext.client_request`), waited for with no worker held, as a question is.

    CODER = Agent(name="coder", tools=EDITOR_TOOLS, model="openai:gpt-4.1")

A call the editor fails, or that no editor serves in time (none connected, or one that did not declare
that capability), is a failed tool call that says why: the model hears it and the run goes on.
"""

from typing import Any, Protocol, runtime_checkable

from tokentail.worker.tools import Tool, tool

COMMAND_SECONDS = 600.0  # how long a command may run in the editor's terminal before the call fails
OUTPUT_BYTES = 64 * 1024  # what the editor keeps of a command's output (its end), as ACP's outputByteLimit


@runtime_checkable
class _Run(Protocol):
    """What these tools use of the run's context (worker/run/context.py: a tool's `ctx`)."""

    async def client_request(self, method: str, params: dict[str, Any], *, expires_in: float = ...) -> Any: ...


@tool
async def read_text_file(path: str, ctx: _Run, line: int | None = None, limit: int | None = None) -> str:
    """Read a text file in the user's editor (its unsaved changes included): an absolute path; from
    `line` (1-based), at most `limit` lines."""
    params: dict[str, Any] = {"path": path}
    params.update({key: value for key, value in (("line", line), ("limit", limit)) if value is not None})
    read = await ctx.client_request("fs/read_text_file", params)
    return str(read.get("content", ""))


@tool
async def write_text_file(path: str, content: str, ctx: _Run) -> str:
    """Write a text file in the user's editor (an absolute path), made if it is not there."""
    await ctx.client_request("fs/write_text_file", {"path": path, "content": content})
    return f"wrote {len(content)} characters to {path}"


@tool
async def run_command(command: str, ctx: _Run, args: list[str] | None = None, cwd: str | None = None) -> dict[str, Any]:
    """Run a command in the user's editor's terminal (`args` its arguments, `cwd` an absolute path) and
    return its exit code and output once it exits."""
    made: dict[str, Any] = {"command": command, "args": args or [], "outputByteLimit": OUTPUT_BYTES}
    if cwd is not None:
        made["cwd"] = cwd
    terminal = {"terminalId": (await ctx.client_request("terminal/create", made))["terminalId"]}
    exited = await ctx.client_request("terminal/wait_for_exit", terminal, expires_in=COMMAND_SECONDS)
    output = await ctx.client_request("terminal/output", terminal)
    await ctx.client_request("terminal/release", terminal)
    return {
        "exit_code": exited.get("exitCode"),
        "signal": exited.get("signal"),
        "output": output.get("output", ""),
        "truncated": bool(output.get("truncated")),
    }


EDITOR_TOOLS: tuple[Tool, ...] = (read_text_file, write_text_file, run_command)
