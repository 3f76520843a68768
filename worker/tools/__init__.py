"""Tools: plain Python functions with typed arguments, offered to models by their JSON schema.

    @tool
    async def lookup_order(order_id: str) -> dict[str, str]:
        "Find an order by its id."

The schema comes from the signature (pydantic), the description from the docstring. Arguments the
model sends are validated against the same signature before the function runs, with a timeout. A
tool made with `needs_approval=True` (or `some_tool.asking_first()`) runs only once a person approves
the call: the agent loop asks (`input.required`, kind `approval`) and the run waits meanwhile.

A tool with a `call_id` parameter is given the id of the call (not by the model: it is left out of
the schema). It is the same when a run taken over after a crash calls the tool again because its
result was never recorded, so it serves as an idempotency key for the API the tool calls:

    @tool
    async def send_email(to: str, body: str, call_id: str) -> str:
        return await mailer.send(to, body, idempotency_key=call_id)

A tool with a `ctx` parameter is given the run's `RunContext` (left out of the schema too), for what a
tool does through the run: ask a person (`ctx.ask`), ask the editor connected over ACP
(`ctx.client_request`: the `editor` tools), say where it is (`ctx.status`). While the run waits for an
answer the tool's call is open; when the run goes on, the tool is called again and each question
answered returns its answer at once.
May import the worker's agent_errors (`ToolError`) and shared/; below the providers, which offer
tools to their models:

builtin  safe demo tools that ship with tokentail
editor   the editor's files and terminal as tools, through the client connected over ACP
"""

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast, overload

from pydantic import ConfigDict, TypeAdapter, ValidationError, validate_call
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import CoreSchema

from tokentail.worker.agent_errors import ToolError


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a model is told of a tool (providers send it in their own shape): below the providers, which
    offer tools to their models, so that a provider may use the tools it knows (the scripted model)."""

    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object


@dataclass(frozen=True)
class Tool:
    function: Callable[..., Any]  # wrapped by pydantic's validate_call: arguments are checked, then it runs
    spec: ToolSpec
    needs_approval: bool = False  # the agent loop asks a person (ctx.ask, kind approval) before each call
    takes_call_id: bool = False  # its function has a `call_id` parameter: the call's id, its idempotency key
    takes_context: bool = False  # its function has a `ctx` parameter: the run's RunContext

    def asking_first(self) -> "Tool":
        """The same tool, run only once a person approves each call."""
        return replace(self, needs_approval=True)

    @property
    def name(self) -> str:
        return self.spec.name

    async def run(self, arguments: dict[str, Any], time_limit: float, call_id: str = "", context: Any = None) -> Any:
        given = {"call_id": call_id} if self.takes_call_id else {}
        if self.takes_context:
            given["ctx"] = context
        arguments = {**arguments, **given}  # never the model's: they are not in the schema
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


_GIVEN = ("call_id", "ctx")  # parameters the agent loop gives a tool, never the model


class _GivenLeftOut(GenerateJsonSchema):
    def is_instance_schema(self, schema: CoreSchema) -> dict[str, Any]:
        return {}  # (a `ctx`'s class: its property is left out of the tool's schema)


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
        named = inspect.signature(fn).parameters
        takes_call_id, takes_context = "call_id" in named, "ctx" in named
        # (a `ctx` annotated RunContext, a class pydantic does not know: checked as an instance of it)
        config = ConfigDict(arbitrary_types_allowed=takes_context)
        schema = TypeAdapter(cast(Any, fn), config=config).json_schema(schema_generator=_GivenLeftOut)
        parameters = {
            "type": "object",
            "properties": {k: v for k, v in schema.get("properties", {}).items() if k not in _GIVEN},
            "required": [k for k in schema.get("required", []) if k not in _GIVEN],
        }
        description = inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0]
        spec = ToolSpec(name or fn.__name__, description, parameters)
        return Tool(validate_call(config=config)(fn), spec, needs_approval, takes_call_id, takes_context)

    return wrap(function) if function is not None else wrap
