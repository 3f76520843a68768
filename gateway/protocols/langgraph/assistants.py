"""LangGraph assistants: each catalog agent is one (`graph_id` its name), with a stable id.

`assistant_id` is `uuid5(NAMESPACE_URL, "tokentail:assistant:<name>")`; every route that takes an
`assistant_id` also takes the agent's name, as LangGraph's server takes a graph's name there.
"""

from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from starlette.exceptions import HTTPException

from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.catalog import BUILTIN_AGENTS, DEFAULT_AGENT

# The time every assistant says it was made: the catalog has no such time, and a fixed one keeps
# the answers the same on every gateway.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC).isoformat()


class AssistantNotFound(HTTPException):
    """No catalog agent of that name or assistant id: a 404 (gateway/errors.py's JSON error)."""

    def __init__(self, assistant_id: str, known: list[str]) -> None:
        super().__init__(404, f"no assistant {assistant_id!r}; the assistants are the agents {', '.join(known)}")


def assistant_id_of(name: str) -> str:
    return str(uuid5(NAMESPACE_URL, "tokentail:assistant:" + name))


def agent_names(settings: Settings) -> list[str]:
    """The deployment's agents: the built-in ones, then those its settings add, by name."""
    return sorted(BUILTIN_AGENTS | set(settings.agents), key=lambda name: (name != DEFAULT_AGENT, name))


def agent_of(assistant_id: str, settings: Settings) -> str:
    """The agent an `assistant_id` names: its assistant id, or its name (`graph_id`)."""
    names = agent_names(settings)
    for name in names:
        if assistant_id in (name, assistant_id_of(name)):
            return name
    raise AssistantNotFound(assistant_id, names)


def assistant_json(name: str, description: str = "") -> dict[str, Any]:
    """The `Assistant` of agent `name`, as LangGraph's server answers it."""
    return {
        "assistant_id": assistant_id_of(name),
        "graph_id": name,
        "name": name,
        "description": description or None,
        "config": {},
        "context": {},
        "metadata": {"created_by": "tokentail"},
        "version": 1,
        "created_at": _EPOCH,
        "updated_at": _EPOCH,
    }


def graph_json(name: str) -> dict[str, list[dict[str, Any]]]:
    """The graph LangGraph draws of an agent: start, the agent, end (tokentail runs no graph)."""
    nodes: list[dict[str, Any]] = [
        {"id": "__start__", "type": "schema", "data": "__start__"},
        {"id": "agent", "type": "runnable", "data": {"name": name}},
        {"id": "__end__", "type": "schema", "data": "__end__"},
    ]
    edges: list[dict[str, Any]] = [{"source": "__start__", "target": "agent"}, {"source": "agent", "target": "__end__"}]
    return {"nodes": nodes, "edges": edges}


_MESSAGES_STATE = {
    "type": "object",
    "title": "MessagesState",
    "properties": {"messages": {"type": "array", "items": {"type": "object"}, "title": "Messages"}},
    "required": ["messages"],
}


def schemas_json(name: str) -> dict[str, Any]:
    """An agent's `GraphSchema`: its state is LangGraph's `MessagesState` (what `values` holds)."""
    return {
        "graph_id": name,
        "input_schema": _MESSAGES_STATE,
        "output_schema": _MESSAGES_STATE,
        "state_schema": _MESSAGES_STATE,
        "config_schema": None,
        "context_schema": None,
    }
