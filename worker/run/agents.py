"""Agents: a named system prompt, tools, step limit and optional model; or your own function.

Your own agents are configured by import path, `TOKENTAIL_AGENTS='{"support": "myapp.agents:support"}'`,
where `support` is either an `Agent` or `async def support(ctx: RunContext) -> None`.
"""

import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from tokentail.shared.features.agent_catalog import AgentInfo, TaskSupport
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.catalog import ASKING_AGENT, DEFAULT_AGENT, TEAM_AGENT
from tokentail.worker.providers.base import InvalidRequest
from tokentail.worker.run.context import RunContext
from tokentail.worker.tools import Tool
from tokentail.worker.tools.builtin import calculator, current_time

AgentFunction = Callable[[RunContext], Awaitable[None]]


@dataclass(frozen=True)
class Agent:
    name: str
    system_prompt: str = ""
    tools: tuple[Tool, ...] = ()
    # Agents of the catalog the model may call as tools (by their names): each call runs one as a child
    # run of this one (docs/subagents.md), its answer the call's result.
    agents: tuple[str, ...] = ()
    max_steps: int = 8  # model calls per run, each of which may call tools (not counting those a steer cut short)
    model: str | None = None  # used when the run names no model
    # What the agent protocols show of it (shared/features/agent_catalog.py): MCP's tool, A2A's agent card.
    description: str = ""
    input_schema: dict[str, Any] | None = None  # None: one string, `input`
    task_support: TaskSupport = "optional"


ASSISTANT = Agent(
    name=DEFAULT_AGENT,
    description="A helpful assistant that answers a message, with a calculator and the current time as tools.",
    system_prompt="You are a helpful assistant. Use a tool when it gives a more reliable answer. Be concise.",
    tools=(calculator, current_time),
)
# The same assistant, asking a person's approval before each tool call: "What is 12 * 7 and 6 * 7?" (the
# offline model calls the calculator twice in one turn) opens two questions at once, each waiting with
# no worker held (docs/agents.md).
CAREFUL = Agent(
    name=ASKING_AGENT,
    description="The assistant, asking your approval before each tool call (the calculator, the current time).",
    system_prompt=ASSISTANT.system_prompt,
    tools=tuple(tool.asking_first() for tool in ASSISTANT.tools),
)
# An agent that asks another (the assistant) as a tool, each call a child run of its run (docs/subagents.md):
# "Ask the assistant what 12 * 7 is" streams the assistant's answer as a child, then answers with it.
TEAM = Agent(
    name=TEAM_AGENT,
    description="An agent that asks the assistant agent as a tool: each call is a child run of its own.",
    system_prompt="You coordinate: ask the assistant agent for what it knows, then answer with what it said.",
    agents=(DEFAULT_AGENT,),
)
BUILTIN = {agent.name: agent for agent in (ASSISTANT, CAREFUL, TEAM)}


# The framework a missing package comes with, as tokentail's extra that installs it.
EXTRAS = {
    "langgraph": "langgraph",
    "langchain_core": "langchain",
    "langchain_openai": "langchain",
    "haystack": "haystack",
    "semantic_kernel": "semantic-kernel",
    "pydantic_ai": "pydantic-ai",
    "agents": "openai-agents",
}


Continuation = Literal["text", "last_step"]
Function = TypeVar("Function", bound=AgentFunction)


def continues(agent: Function, *, redoes_after_last_step: bool = False) -> Function:
    """Mark your agent function as one that goes on after a takeover: the worker that takes the run
    over runs it again with its record (`ctx.step` results, the text clients have) instead of
    starting it over (see docs/agents.md). `redoes_after_last_step`: it cannot go on from the text,
    but redoes what followed its last step (a graph resumed from its last checkpoint): clients drop
    what it streamed after that step, and it calls `ctx.this_attempt.skip_recorded()`."""
    agent.tokentail_continues = "last_step" if redoes_after_last_step else "text"  # type: ignore[attr-defined]
    return agent


def describe(
    agent: Function,
    *,
    description: str | None = None,
    input_schema: dict[str, Any] | None = None,
    task_support: TaskSupport = "optional",
) -> Function:
    """Say what your agent function is, for the agent protocols (MCP's tools, A2A's agent cards):
    `description` (default: its docstring), `input_schema` (the JSON Schema of a call's arguments,
    which it reads as `ctx.arguments`; default: one string, `input`), `task_support` (MCP's: whether
    a call of it becomes a task the client polls: "optional", "required", or "forbidden")."""
    schema = {"input_schema": input_schema} if input_schema is not None else {}
    # Made now, so that a schema that is none is refused as the module loads, not at a call.
    info = AgentInfo(name="", description=description or "", task_support=task_support, **schema)
    agent.tokentail_info = info  # type: ignore[attr-defined]
    return agent


def info_of(name: str, agent: "Agent | AgentFunction") -> AgentInfo:
    """What the agent says about itself, under the name it is configured by."""
    if isinstance(agent, Agent):
        schema = {"input_schema": agent.input_schema} if agent.input_schema is not None else {}
        return AgentInfo(name=name, description=agent.description, task_support=agent.task_support, **schema)
    declared: AgentInfo | None = getattr(agent, "tokentail_info", None)
    description = (declared.description if declared else "") or inspect.getdoc(agent) or ""
    fields = declared.model_dump(exclude={"name", "description"}) if declared else {}
    return AgentInfo(name=name, description=description, **fields)


def continuation_of(agent: "Agent | AgentFunction") -> Continuation | None:
    """How a takeover continues the agent's run: from the text, from its last step, or not (it starts over)."""
    if isinstance(agent, Agent):
        return "text"
    mode = getattr(agent, "tokentail_continues", None)
    return mode if mode in ("text", "last_step") else None


def load_agent(name: str | None, settings: Settings) -> Agent | AgentFunction:
    name = name or DEFAULT_AGENT
    if name in settings.agents:
        return _import(name, settings.agents[name])
    if name in BUILTIN:
        return BUILTIN[name]
    raise InvalidRequest(f"unknown agent {name!r}")


def check_agents(settings: Settings) -> None:
    """Import every configured agent, as a worker starts: a wrong path or a missing package is
    told now, naming both, rather than by the first run that uses the agent."""
    for name in settings.agents:
        load_agent(name, settings)


def agent_infos(settings: Settings) -> list[AgentInfo]:
    """What each agent that loads, built-in ones included, says about itself (one that does not
    load fails its runs with the reason: see `load_agent`)."""
    infos = []
    for name in [*BUILTIN, *(name for name in settings.agents if name not in BUILTIN)]:
        try:
            infos.append(info_of(name, load_agent(name, settings)))
        except InvalidRequest:
            continue
    return infos


def _import(name: str, path: str) -> Agent | AgentFunction:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise InvalidRequest(f"agent {name!r}: {path!r} is not an import path 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InvalidRequest(f"agent {name!r}: cannot import {path!r}: {_missing(exc, module_name)}") from None
    except Exception as exc:  # the module itself failed as it ran
        raise InvalidRequest(f"agent {name!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    target = getattr(module, attribute, None)
    if target is None:
        raise InvalidRequest(f"agent {name!r}: {module_name!r} has no {attribute!r} ({path!r})")
    if not (isinstance(target, Agent) or callable(target)):
        raise InvalidRequest(f"agent {name!r}: {path!r} is neither an Agent nor an async function")
    return target  # type: ignore[no-any-return]


def _missing(exc: ModuleNotFoundError, module_name: str) -> str:
    missing = exc.name or ""
    if module_name == missing or module_name.startswith(missing + "."):
        return f"there is no module {missing!r} (is its folder the working directory, or on PYTHONPATH?)"
    package = missing.split(".")[0]
    extra = EXTRAS.get(package)
    install = f"pip install 'tokentail[{extra}]'" if extra else f"install the package that provides {package!r}"
    return f"it imports {missing!r}, which is not installed ({install})"
