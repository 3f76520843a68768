"""tokentail: a streaming gateway for AI agents with resumable sessions. What users import.

    from tokentail import AsyncTokentail, Tokentail      # clients that stream with automatic resume
    from tokentail import RunContext, tool, Agent        # for your own agents and tools

Everything else (the `gateway`, `worker` and `shared` packages) is internal: see docs/python.md.
The agent-side names come from the worker and are imported when first used, so that a program
that only uses the client imports no server code (no FastAPI, arq or gateway).
"""

import importlib
from typing import TYPE_CHECKING, Any

from shared.events import Event, EventType
from tokentail.client import AsyncTokentail, Resumption, SessionCreated, Tokentail, TokentailError

if TYPE_CHECKING:
    from worker.agents import Agent
    from worker.context import RunContext
    from worker.tools import tool

__all__ = [
    "Agent",
    "AsyncTokentail",
    "Event",
    "EventType",
    "Resumption",
    "RunContext",
    "SessionCreated",
    "Tokentail",
    "TokentailError",
    "tool",
]

_FROM_THE_WORKER = {"Agent": "worker.agents", "RunContext": "worker.context", "tool": "worker.tools"}


def __getattr__(name: str) -> Any:
    module = _FROM_THE_WORKER.get(name)
    if module is None:
        raise AttributeError(f"module 'tokentail' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value
