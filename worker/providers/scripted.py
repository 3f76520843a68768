"""The offline `scripted` model: deterministic text derived from the input, at a chosen pace.

Tests, demos and benchmarks shape the load with `params`: `tokens` (how many), `tokens_per_second`
(0 streams as fast as possible) and `fail_at_token` (raise after that many tokens, to exercise
failure paths). The same input and params always give the same text.
"""

import asyncio
import hashlib
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.providers.base import Chunk, InvalidRequest, ModelRequest, TextDelta, Usage

_SENTENCES = (
    "This answer comes from the offline scripted model, so it works without a network or an API key.",
    "Each token is appended to a Redis stream that belongs to your session.",
    "The gateway tails that stream and sends every event to you with an id.",
    "If your connection drops, reconnect with the last id you saw and the stream continues right after it.",
    "Nothing is skipped and nothing is repeated, even if you land on another gateway replica.",
    "Workers can come and go while the answer keeps its place in the log.",
    "Tokens that arrive close together are sent as one delta, which saves work on every hop.",
    "The first token is never held back, so the answer starts as soon as the model speaks.",
    "A run ends with a completed, failed or cancelled event, and the stream closes after it.",
    "Ask again in the same session and the next run appends to the same stream.",
    "You can shape this reply with params: tokens sets its length and tokens_per_second its pace.",
    "Refresh the page halfway through and the text picks up where it was.",
)


class ScriptedParams(BaseModel):
    model_config = ConfigDict(extra="ignore")  # provider options such as temperature do not apply

    tokens: int = Field(48, ge=0, le=1_000_000)
    tokens_per_second: float = Field(25.0, ge=0, le=100_000)
    fail_at_token: int | None = Field(None, ge=0)


class ScriptedFailure(RuntimeError):
    pass


def scripted_tokens(text: str, count: int) -> list[str]:
    """`count` tokens (words, each after its space), starting at a sentence chosen by `text`."""
    first = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % len(_SENTENCES)
    words: list[str] = []
    sentence = first
    while len(words) < count:
        words.extend(_SENTENCES[sentence % len(_SENTENCES)].split())
        sentence += 1
    return [word if i == 0 else " " + word for i, word in enumerate(words[:count])]


class ScriptedProvider:
    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        try:
            params = ScriptedParams.model_validate(request.params)
        except ValidationError as exc:
            raise InvalidRequest(f"invalid params for the scripted model: {exc}") from None
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, token in enumerate(scripted_tokens(request.input, params.tokens)):
            if params.fail_at_token is not None and i == params.fail_at_token:
                raise ScriptedFailure(f"scripted failure at token {i}, as asked by params.fail_at_token")
            # Pace against the start time, not the previous token, so timer drift does not add up. Even
            # unpaced, yield to the loop per token, as a network stream would, so other runs proceed.
            delay = start + i / params.tokens_per_second - loop.time() if params.tokens_per_second else 0.0
            await asyncio.sleep(max(0.0, delay))
            yield TextDelta(token)
        yield Usage(input_tokens=len(request.input.split()), output_tokens=params.tokens)
