"""What every model provider speaks: a request in, a stream of chunks out.

ProviderError        the provider failed; `retryable` if trying again may help
InvalidRequest       the request cannot be served as asked: fail the run, never retry
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tokentail.shared.vocabulary.params import RunParams, check_params_for
from tokentail.worker.tools import ToolSpec


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]
    invalid_arguments: str | None = None  # the raw text, when the model sent arguments that are not a JSON object


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()  # assistant turns that called tools
    call_id: str | None = None  # tool turns: the call this is the result of
    is_error: bool = False  # tool turns: the tool failed
    thinking: tuple["ThinkingBlock", ...] = ()  # assistant turns: what the provider needs back verbatim


@dataclass(frozen=True, slots=True)
class ModelRequest:
    model: str  # the name after `<provider>:`; empty for `scripted`
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    params: RunParams = field(default_factory=RunParams)
    # The start of the answer, which clients have already: the provider streams only what follows
    # it (only asked of a provider that `continues`).
    continue_text: str = ""

    def check_params(self, provider: str) -> None:
        """InvalidRequest if the run's params name a knob `provider` does not take."""
        try:
            check_params_for(provider, self.params.given())
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Thinking text the model streams before or beside its answer (never part of the answer)."""

    text: str


@dataclass(frozen=True, slots=True)
class ThinkingBlock:
    """A whole block of the model's thinking as the provider must get it back with the turn's tool
    calls (Anthropic's `thinking` with its signature, or `redacted_thinking`)."""

    block: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    # For the call's span (worker/run/traces.py): why the model stopped, and the model that answered.
    finish_reasons: tuple[str, ...] = field(default=(), compare=False)
    response_model: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Progress:
    """The model is producing something not shown yet (tool call fragments): it is not idle."""


Chunk = TextDelta | ReasoningDelta | ThinkingBlock | ToolCall | Usage | Progress


async def after_prefill(chunks: AsyncIterator[Chunk], trimmed: str) -> AsyncIterator[Chunk]:
    """The continuation of an answer whose start was sent without its trailing whitespace `trimmed`
    (Anthropic refuses a final assistant message that ends in whitespace): a model that writes that
    whitespace again has it dropped, once, so the text reads on without doubling it. Closed early (a run
    cancelled mid-answer), it closes `chunks` then, so that the model call, and its span, end in the caller's
    task and context, not later in one of the event loop's own (which a context detached there cannot be)."""
    try:
        async for chunk in chunks:
            if trimmed and isinstance(chunk, TextDelta):
                text = chunk.text
                common = 0
                while common < min(len(text), len(trimmed)) and text[common].isspace():
                    common += 1
                trimmed = ""
                if not (text := text[common:]):
                    continue
                chunk = TextDelta(text)
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


class InvalidRequest(ValueError):
    """The request cannot be served as asked (bad params, unknown model): the run fails, nothing retries."""


class ProviderError(Exception):
    def __init__(
        self, message: str, *, kind: str = "provider_error", retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind  # the `error.type` of run.failed
        self.retryable = retryable
        self.retry_after = retry_after


class Provider(Protocol):
    provider: str  # its name in shared/vocabulary/catalog.py, as traces name it (`gen_ai.provider.name`)
    continues: bool  # it can continue a partial answer (`ModelRequest.continue_text`)

    def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        """Text deltas as they come, then each tool call whole, and usage when the provider reports it
        (with its finish reasons and the model that answered, for the call's span: worker/run/traces.py)."""
        ...
