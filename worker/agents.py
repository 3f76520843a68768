"""Agents: a named system prompt, tools, step limit and optional model; or your own function.

Your own agents are configured by import path, `TOKENTAIL_AGENTS='{"support": "myapp.agents:support"}'`,
where `support` is either an `Agent` or `async def support(ctx: RunContext) -> None`.
"""

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tokentail.shared.catalog import DEFAULT_AGENT
from tokentail.shared.settings import Settings
from tokentail.worker.context import RunContext
from tokentail.worker.providers.base import InvalidRequest
from tokentail.worker.tools import Tool
from tokentail.worker.tools.builtin import calculator, current_time

AgentFunction = Callable[[RunContext], Awaitable[None]]


@dataclass(frozen=True)
class Agent:
    name: str
    system_prompt: str = ""
    tools: tuple[Tool, ...] = ()
    max_steps: int = 8  # model calls per run; each step may call tools
    model: str | None = None  # used when the run names no model


ASSISTANT = Agent(
    name=DEFAULT_AGENT,
    system_prompt="You are a helpful assistant. Use a tool when it gives a more reliable answer. Be concise.",
    tools=(calculator, current_time),
)
BUILTIN = {ASSISTANT.name: ASSISTANT}


def load_agent(name: str | None, settings: Settings) -> Agent | AgentFunction:
    name = name or DEFAULT_AGENT
    if name in settings.agents:
        return _import(name, settings.agents[name])
    if name in BUILTIN:
        return BUILTIN[name]
    raise InvalidRequest(f"unknown agent {name!r}")


def _import(name: str, path: str) -> Agent | AgentFunction:
    module_name, _, attribute = path.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidRequest(f"agent {name!r}: cannot import {path!r}: {exc}") from None
    if not (isinstance(target, Agent) or callable(target)):
        raise InvalidRequest(f"agent {name!r}: {path!r} is neither an Agent nor an async function")
    return target  # type: ignore[no-any-return]
