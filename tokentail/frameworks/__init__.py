"""Adapters that run agents written with a framework in a tokentail worker, unchanged: one module
per framework, each needing its optional extra (`pip install tokentail[langgraph]`, ...). Each
wraps the user's object and returns a tokentail agent (an async function of a `RunContext`),
registered like any other (`TOKENTAIL_AGENTS`). They use the frameworks' async APIs, so that a
cancel reaches the framework's model stream and stops the token spend. See docs/agents.md.

They import the worker's agent side (worker/event_sink.py, worker/agent_errors.py, worker/run/) and
each its framework, never the gateway:

langgraph        LangGraph graphs
langchain        LangChain: turns as messages, a streaming callback handler (langgraph's too)
openai_agents    the OpenAI Agents SDK's agents
pydantic_ai      PydanticAI's agents
haystack         Haystack's agents and pipelines
semantic_kernel  Semantic Kernel's agents and chat services
"""

import json
from typing import Any


def as_json(value: Any) -> Any:
    """A value a framework gives (a tool's result, a custom event's data) as tokentail's events carry
    it, the same in every adapter: as JSON as it is; text stays text ("4" is not the number 4),
    except the JSON text of an object or a list, which frameworks that hand the model only text
    (LangChain, Haystack) made of the tool's own object or list; a pydantic model as its JSON; and
    anything JSON cannot hold, as its text."""
    if isinstance(value, str):
        if value.lstrip()[:1] in ("{", "["):
            try:
                return json.loads(value)
            except ValueError:
                pass
        return value
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value
