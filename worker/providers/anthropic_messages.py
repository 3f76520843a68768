"""Anthropic messages streaming through the official SDK.

Text comes as `text_delta`; a tool call as a `tool_use` content block whose input arrives in
`input_json_delta` fragments, joined when the block stops. With extended thinking (the run's
`thinking_budget`), `thinking` blocks stream first: their text is reasoning, and each whole block
(with its signature, or a `redacted_thinking` block) must go back verbatim in front of the turn's
tool calls, so it is handed on as a `ThinkingBlock`. `message_start` and `message_delta` carry
usage (the latter cumulative); `ping` is skipped by the SDK; an `error` event inside the stream (for
example `overloaded_error`) is raised by the SDK as a status error with the stream's own status, 200,
so its type is read from the body.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import anthropic
import httpx2
from anthropic import types

from tokentail.shared.vocabulary.catalog import ANTHROPIC
from tokentail.worker.providers.base import (
    Chunk,
    Message,
    ModelRequest,
    Progress,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ThinkingBlock,
    Usage,
    after_prefill,
)
from tokentail.worker.providers.errors import connection_error, status_error
from tokentail.worker.providers.openai_chat import parse_arguments
from tokentail.worker.tools import ToolSpec

DEFAULT_MAX_TOKENS = 4096
_RETRYABLE_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


def _messages(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    converted: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.call_id, "content": message.content}
            if message.is_error:
                block["is_error"] = True
            # Results of one turn's parallel calls go back together, in one user message.
            if converted and converted[-1]["role"] == "user" and isinstance(converted[-1]["content"], list):
                converted[-1]["content"].append(block)
            else:
                converted.append({"role": "user", "content": [block]})
        elif message.role == "assistant" and message.tool_calls:
            content: list[dict[str, Any]] = [dict(block.block) for block in message.thinking]
            content += [{"type": "text", "text": message.content}] if message.content else []
            content += [
                {"type": "tool_use", "id": call.call_id, "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            ]
            converted.append({"role": "assistant", "content": content})
        elif message.role in ("user", "assistant"):
            converted.append({"role": message.role, "content": message.content})
    return system, converted


def _tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]


def _stream_error_type(body: object) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        kind = body["error"].get("type")
        return kind if isinstance(kind, str) else None
    return None


class _Blocks:
    """The content blocks of one streamed message, by index: what each event of it means."""

    def __init__(self) -> None:
        self.tool_uses: dict[int, tuple[str, str, list[str]]] = {}  # index -> (id, name, input fragments)
        self.thinking: dict[int, dict[str, Any]] = {}  # index -> the block as it will go back

    def start(self, index: int, block: Any) -> None:
        if isinstance(block, types.ToolUseBlock):
            self.tool_uses[index] = (block.id, block.name, [])
        elif isinstance(block, types.ThinkingBlock):
            self.thinking[index] = {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
        elif isinstance(block, types.RedactedThinkingBlock):
            self.thinking[index] = {"type": "redacted_thinking", "data": block.data}

    def delta(self, index: int, delta: Any) -> Iterator[Chunk]:
        if isinstance(delta, types.TextDelta):
            yield TextDelta(delta.text)
        elif isinstance(delta, types.InputJSONDelta) and index in self.tool_uses:
            self.tool_uses[index][2].append(delta.partial_json)
            yield Progress()
        elif isinstance(delta, types.ThinkingDelta) and index in self.thinking:
            self.thinking[index]["thinking"] += delta.thinking
            yield ReasoningDelta(delta.thinking)
        elif isinstance(delta, types.SignatureDelta) and index in self.thinking:
            self.thinking[index]["signature"] = delta.signature

    def stop(self, index: int) -> Iterator[Chunk]:
        if index in self.tool_uses:
            call_id, name, fragments = self.tool_uses.pop(index)
            yield parse_arguments(call_id, name, "".join(fragments))
        elif index in self.thinking:
            yield ThinkingBlock(self.thinking.pop(index))


class AnthropicProvider:
    provider = ANTHROPIC
    continues = True  # a final assistant message is continued (prefill)

    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self._client = client

    def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        request.check_params(ANTHROPIC)
        system, messages = _messages(request.messages)
        # The API refuses a final assistant message that ends in whitespace: it goes without it.
        prefill = request.continue_text.rstrip()
        if prefill:
            messages.append({"role": "assistant", "content": prefill})
        chunks = self._stream(request, system, messages)
        return after_prefill(chunks, request.continue_text[len(prefill) :])

    async def _stream(self, request: ModelRequest, system: str, messages: list[dict[str, Any]]) -> AsyncIterator[Chunk]:
        knobs = request.params
        blocks = _Blocks()
        input_tokens = output_tokens = 0
        model, stop_reason = "", ""  # for the call's span
        budget = knobs.thinking_budget
        try:
            stream = await self._client.messages.create(
                model=request.model,
                messages=cast(Any, messages),
                system=system or anthropic.omit,
                tools=cast(Any, _tools(request.tools)) if request.tools else anthropic.omit,
                # Required by the API, and counting the thinking: above the budget.
                max_tokens=knobs.max_tokens or DEFAULT_MAX_TOKENS + (budget or 0),
                stop_sequences=anthropic.omit if knobs.stop is None else knobs.stop,
                thinking={"type": "enabled", "budget_tokens": budget} if budget else anthropic.omit,
                stream=True,
            )
            async for event in stream:
                if isinstance(event, types.RawMessageStartEvent):
                    input_tokens = event.message.usage.input_tokens
                    output_tokens = event.message.usage.output_tokens
                    model = event.message.model
                elif isinstance(event, types.RawContentBlockStartEvent):
                    blocks.start(event.index, event.content_block)
                elif isinstance(event, types.RawContentBlockDeltaEvent):
                    for chunk in blocks.delta(event.index, event.delta):
                        yield chunk
                elif isinstance(event, types.RawContentBlockStopEvent):
                    for chunk in blocks.stop(event.index):
                        yield chunk
                elif isinstance(event, types.RawMessageDeltaEvent):
                    output_tokens = event.usage.output_tokens
                    stop_reason = event.delta.stop_reason or stop_reason
        except anthropic.APIStatusError as exc:
            raise _status_error(request.model, exc) from None
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            raise connection_error("Anthropic", exc) from None
        yield Usage(input_tokens, output_tokens, (stop_reason,) if stop_reason else (), model)


def _status_error(model: str, exc: anthropic.APIStatusError) -> ProviderError:
    if exc.status_code == 200:  # an `error` event inside the stream
        kind = _stream_error_type(exc.body) or "api_error"
        return ProviderError(
            f"Anthropic stream error: {kind}", kind="provider_unavailable", retryable=kind in _RETRYABLE_STREAM_ERRORS
        )
    return status_error("Anthropic", model, exc.status_code, exc.message, exc.response.headers)
