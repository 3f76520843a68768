"""What a request may name: models (`<provider>:<model>` or `scripted`) and agents.

The gateway checks names here, up front, so a typo is a 422 rather than a failed run; the worker
holds the implementations and a test keeps the two lists in step.
"""

import importlib.util
from typing import NamedTuple

SCRIPTED = "scripted"
OPENAI = "openai"
ANTHROPIC = "anthropic"
OPENAI_COMPATIBLE = "openai-compatible"
PROVIDERS = frozenset({SCRIPTED, OPENAI, ANTHROPIC, OPENAI_COMPATIBLE})

DEFAULT_AGENT = "assistant"
TEAM_AGENT = "team"  # the assistant asking the assistant agent as a tool: child runs, offline
ASKING_AGENT = "careful"  # the assistant, asking a person before each tool call: questions, offline
BUILTIN_AGENTS = frozenset({DEFAULT_AGENT, ASKING_AGENT, TEAM_AGENT})


class ModelRef(NamedTuple):
    provider: str
    name: str


def parse_model(value: str) -> ModelRef:
    provider, _, name = value.partition(":")
    if provider not in PROVIDERS:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown model provider {provider!r} in {value!r}; available: {known}")
    if provider != SCRIPTED and not name:
        raise ValueError(f"model {value!r} needs a name after '{provider}:', e.g. '{provider}:<model>'")
    return ModelRef(provider, name)


def check_agent(name: str, custom: set[str] | frozenset[str]) -> None:
    if name not in BUILTIN_AGENTS and name not in custom:
        known = ", ".join(sorted(BUILTIN_AGENTS | set(custom)))
        raise ValueError(f"unknown agent {name!r}; available: {known}")


def unresolved_agents(agents: dict[str, str]) -> list[str]:
    """What is wrong with each configured agent whose module does not exist, found without running
    it (the gateway never runs an agent; a worker imports each as it starts)."""
    return [f"agent {name!r}: {problem}" for name, path in agents.items() if (problem := unresolved_import_path(path))]


def unresolved_import_path(path: str) -> str | None:
    """What is wrong with an import path 'package.module:attribute' whose module does not exist, found
    without importing the module (its parent packages are imported): None when it may be right."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        return f"{path!r} is not an import path 'package.module:attribute'"
    try:
        found = importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError as exc:  # a package on the way is missing, or what it imports
        found = not (module_name == exc.name or module_name.startswith(f"{exc.name}."))
    if found:
        return None
    return f"there is no module {module_name!r} ({path!r}): is its folder the working directory, or on PYTHONPATH?"
