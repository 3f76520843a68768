"""tokentail: a streaming gateway for AI agents with resumable sessions. What users import.

    from tokentail import AsyncTokentail, Tokentail      # clients that stream with automatic resume
    from tokentail import RunContext, tool, Agent        # for your own agents and tools
    from tokentail import EDITOR_TOOLS                   # the editor's files and terminal, over ACP
    from tokentail import continues                      # your agent goes on after a takeover
    from tokentail import describe                       # what your agent says of itself to MCP and A2A clients
    from tokentail import ChildFailed, SpawnRefused, ToolError, ...  # the exceptions an agent meets

Everything else (`tokentail.gateway`, `tokentail.worker`, `tokentail.shared`) is internal: see docs/python.md.
The agent-side names come from the worker and are imported when first used, so that a program
that only uses the client imports no server code (no FastAPI, arq or gateway).
The public face's modules import tokentail.gateway, tokentail.worker and tokentail.shared (the
gateway and the worker only where a command runs them); the client imports only shared/'s events and
errors:

client       the Python client, async and sync, that streams with automatic resume
cli          the `tokentail` command (`__main__`: `python -m tokentail`)
dev          `tokentail dev`: a private redis-server, gateways and workers; its supervisor (supervisor)
             and, with several gateways, its round-robin balancer (balancer)
redis_server a private redis-server, and a local Redis Cluster of them
chat         `tokentail chat`: a run's answer streamed to the terminal
offline      the offline scripted model behind OpenAI's Chat Completions API (its wire: openai_wire)
frameworks/  one adapter per agent framework, each behind its optional extra
"""

import importlib
from typing import TYPE_CHECKING, Any

from tokentail.client import ApiError, AsyncTokentail, Resumption, SessionCreated, Tokentail
from tokentail.shared.vocabulary.errors import TokentailError
from tokentail.shared.vocabulary.events import Event, EventType

if TYPE_CHECKING:
    from tokentail.worker.agent_errors import (
        AgentError,
        BlockingCall,
        ChildFailed,
        EventTooLarge,
        OutputTooLarge,
        SpawnRefused,
        StepTooLarge,
        ToolError,
        WaitingForChildren,
        WaitingForInput,
    )
    from tokentail.worker.run.agents import Agent, continues, describe
    from tokentail.worker.run.context import RunContext
    from tokentail.worker.tools import tool
    from tokentail.worker.tools.editor import EDITOR_TOOLS

__all__ = [
    "EDITOR_TOOLS",
    "Agent",
    "AgentError",
    "ApiError",
    "AsyncTokentail",
    "BlockingCall",
    "ChildFailed",
    "Event",
    "EventTooLarge",
    "EventType",
    "OutputTooLarge",
    "Resumption",
    "RunContext",
    "SessionCreated",
    "SpawnRefused",
    "StepTooLarge",
    "Tokentail",
    "TokentailError",
    "ToolError",
    "WaitingForChildren",
    "WaitingForInput",
    "continues",
    "describe",
    "tool",
]

# The exceptions an agent meets, drawn as a tree in their module's docstring.
_AGENT_ERRORS = (
    "AgentError",
    "BlockingCall",
    "ChildFailed",
    "EventTooLarge",
    "OutputTooLarge",
    "SpawnRefused",
    "StepTooLarge",
    "ToolError",
    "WaitingForChildren",
    "WaitingForInput",
)

_FROM_THE_WORKER = {
    **dict.fromkeys(_AGENT_ERRORS, "tokentail.worker.agent_errors"),
    "Agent": "tokentail.worker.run.agents",
    "continues": "tokentail.worker.run.agents",
    "describe": "tokentail.worker.run.agents",
    "RunContext": "tokentail.worker.run.context",
    "tool": "tokentail.worker.tools",
    "EDITOR_TOOLS": "tokentail.worker.tools.editor",
}


def __getattr__(name: str) -> Any:
    module = _FROM_THE_WORKER.get(name)
    if module is None:
        raise AttributeError(f"module 'tokentail' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value
