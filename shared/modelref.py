"""Parsing of the `model` field: `scripted`, or `<provider>:<model name>`."""

from typing import NamedTuple

SCRIPTED = "scripted"
# Providers this version of the worker can run. The gateway refuses others up front.
PROVIDERS = frozenset({SCRIPTED})


class ModelRef(NamedTuple):
    provider: str
    name: str


def parse_model(value: str) -> ModelRef:
    provider, _, name = value.partition(":")
    if provider not in PROVIDERS:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown model provider {provider!r} in {value!r}; available: {known}")
    if provider != SCRIPTED and not name:
        raise ValueError(f"model {value!r} needs a name after '{provider}:'")
    return ModelRef(provider, name)
