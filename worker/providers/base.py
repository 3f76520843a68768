"""What every model provider speaks: a request in, a stream of chunks out."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.records import Turn


@dataclass(frozen=True, slots=True)
class ModelRequest:
    model: str  # the name after `<provider>:`; empty for `scripted`
    input: str
    history: list[Turn] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int


Chunk = TextDelta | Usage


class InvalidRequest(ValueError):
    """The request cannot be served as asked (bad params, unknown model): the run fails, nothing retries."""


class Provider(Protocol):
    def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]: ...
