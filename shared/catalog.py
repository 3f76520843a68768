"""What a request may name: models (`<provider>:<model>` or `scripted`) and agents.

The gateway checks names here, up front, so a typo is a 422 rather than a failed run; the worker
holds the implementations and a test keeps the two lists in step.
"""

from typing import NamedTuple

SCRIPTED = "scripted"
OPENAI = "openai"
ANTHROPIC = "anthropic"
OPENAI_COMPATIBLE = "openai-compatible"
PROVIDERS = frozenset({SCRIPTED, OPENAI, ANTHROPIC, OPENAI_COMPATIBLE})

DEFAULT_AGENT = "assistant"
BUILTIN_AGENTS = frozenset({DEFAULT_AGENT})


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
