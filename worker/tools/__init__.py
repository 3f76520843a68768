"""Tools: plain Python functions with typed arguments, offered to models by their JSON schema.

    @tool
    async def lookup_order(order_id: str) -> dict[str, str]:
        "Find an order by its id."

The schema comes from the signature (pydantic), the description from the docstring. Arguments the
model sends are validated against the same signature before the function runs, with a timeout. A
tool made with `needs_approval=True` (or `some_tool.asking_first()`) runs only once a person approves
the call: the agent loop asks (`input.required`, kind `approval`) and the run waits meanwhile.
"""

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast, overload

from pydantic import TypeAdapter, ValidationError, validate_call

from tokentail.worker.providers.base import ToolSpec


class ToolError(Exception):
    """A tool failed in a way the model should hear about (bad arguments, a timeout, its own error)."""


@dataclass(frozen=True)
class Tool:
    function: Callable[..., Any]  # wrapped by pydantic's validate_call: arguments are checked, then it runs
    spec: ToolSpec
    needs_approval: bool = False  # the agent loop asks a person (ctx.ask, kind approval) before each call

    def asking_first(self) -> "Tool":
        """The same tool, run only once a person approves each call."""
        return replace(self, needs_approval=True)

    @property
    def name(self) -> str:
        return self.spec.name

    async def run(self, arguments: dict[str, Any], time_limit: float) -> Any:
        try:
            async with asyncio.timeout(time_limit):
                result = self.function(**arguments)
                if inspect.isawaitable(result):
                    result = await result
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None
        except TimeoutError:
            raise ToolError(f"{self.name} did not finish within {time_limit:g} s") from None
        except ToolError:
            raise
        except Exception as exc:  # the model hears that the tool failed; the run goes on
            raise ToolError(f"{self.name} failed: {type(exc).__name__}: {exc}") from None
        return result


@overload
def tool(function: Callable[..., Any], *, name: str | None = None, needs_approval: bool = False) -> Tool: ...


@overload
def tool(
    function: None = None, *, name: str | None = None, needs_approval: bool = False
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None, *, name: str | None = None, needs_approval: bool = False
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a tool; use as `@tool` or `@tool(name="...", needs_approval=True)`."""

    def wrap(fn: Callable[..., Any]) -> Tool:
        schema = TypeAdapter(cast(Any, fn)).json_schema()
        parameters = {
            "type": "object",
            "properties": schema.get("properties", {}),
            "required": schema.get("required", []),
        }
        description = inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0]
        return Tool(validate_call(fn), ToolSpec(name or fn.__name__, description, parameters), needs_approval)

    return wrap(function) if function is not None else wrap
