"""OpenAI chat completions streaming, and any server that speaks the same API (Ollama, vLLM, LM Studio,
Azure, GitHub Models), through the official SDK.

Tool calls arrive as fragments in `delta.tool_calls`, keyed by `index`: the id and name in the first,
the arguments split across many, several calls interleaved in one turn. They are assembled here and
yielded whole once the stream ends. Usage comes in a last chunk with no choices
(`stream_options={"include_usage": True}`).
"""

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2
import openai

from tokentail.shared.vocabulary.catalog import OPENAI
from tokentail.worker.providers.base import (
    Chunk,
    Message,
    ModelRequest,
    Progress,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    Usage,
)
from tokentail.worker.providers.errors import connection_error, status_error
from tokentail.worker.tools import ToolSpec


@dataclass
class _PartialCall:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def parse_arguments(call_id: str, name: str, raw: str) -> ToolCall:
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        return ToolCall(call_id, name, {}, invalid_arguments=raw)
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, {}, invalid_arguments=raw)
    return ToolCall(call_id, name, arguments)


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    converted: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            converted.append({"role": "tool", "tool_call_id": message.call_id, "content": message.content})
        elif message.role == "assistant" and message.tool_calls:
            converted.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            converted.append({"role": message.role, "content": message.content})
    return converted


def _tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


def _delta_chunks(delta: Any, calls: dict[int, "_PartialCall"]) -> Iterator[Chunk]:
    """What one choice's delta says; tool call fragments are kept in `calls` until the stream ends."""
    if delta.content:
        yield TextDelta(delta.content)
    # Not in OpenAI's own API: the field servers of reasoning models stream their thinking in
    # (vLLM, DeepSeek, Ollama, LM Studio).
    if reasoning := getattr(delta, "reasoning_content", None):
        yield ReasoningDelta(reasoning)
    if delta.tool_calls:
        yield Progress()
    for fragment in delta.tool_calls or ():
        call = calls.setdefault(fragment.index, _PartialCall())
        call.call_id = fragment.id or call.call_id
        if fragment.function is not None:
            call.name = fragment.function.name or call.name
            call.arguments.append(fragment.function.arguments or "")


def _or_omit(value: Any) -> Any:
    return openai.omit if value is None else value


def _continuing(
    messages: list[dict[str, Any]], text: str, continuation: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and extra body fields that ask a server to continue `text`, the start of its answer."""
    if continuation == "prefix":  # DeepSeek's chat prefix completion
        return [*messages, {"role": "assistant", "content": text, "prefix": True}], {}
    # vLLM: the last message is left open, with no end-of-turn token, and the model writes on from it.
    extra = {"continue_final_message": True, "add_generation_prompt": False}
    return [*messages, {"role": "assistant", "content": text}], extra


def _usage(chunk: Any, finish_reasons: list[str]) -> Usage:
    """The usage a stream's last chunk reports (after its choices' finish reasons)."""
    usage = chunk.usage
    return Usage(usage.prompt_tokens, usage.completion_tokens, tuple(finish_reasons), chunk.model or "")


class OpenAIProvider:
    def __init__(
        self, client: openai.AsyncOpenAI, name: str = "OpenAI", provider: str = OPENAI, continuation: str = "none"
    ) -> None:
        self._client = client
        self._name = name
        self.provider = provider  # `openai` or `openai-compatible`: which params it takes
        # How the server continues a partial answer: `vllm`, `prefix`, or `none` (OpenAI's own API cannot).
        self._continuation = continuation
        self.continues = continuation != "none"

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        request.check_params(self.provider)
        calls: dict[int, _PartialCall] = {}
        finish_reasons: list[str] = []
        knobs = request.params
        messages, extra_body = _messages(request.messages), dict[str, Any]()
        if request.continue_text and self.continues:
            messages, extra_body = _continuing(messages, request.continue_text, self._continuation)
        if knobs.top_k is not None:
            # Not in OpenAI's API; servers that speak it and sample with top_k (vLLM, Ollama) take it here.
            extra_body["top_k"] = knobs.top_k
        try:
            stream = await self._client.chat.completions.create(
                model=request.model,
                messages=cast(Any, messages),
                stream=True,
                stream_options={"include_usage": True},
                tools=cast(Any, _tools(request.tools)) if request.tools else openai.omit,
                temperature=_or_omit(knobs.temperature),
                top_p=_or_omit(knobs.top_p),
                max_tokens=_or_omit(knobs.max_tokens),
                stop=_or_omit(knobs.stop),
                seed=_or_omit(knobs.seed),
                presence_penalty=_or_omit(knobs.presence_penalty),
                frequency_penalty=_or_omit(knobs.frequency_penalty),
                extra_body=extra_body or None,
            )
            async for chunk in stream:
                if chunk.usage is not None:
                    yield _usage(chunk, finish_reasons)
                for choice in chunk.choices:
                    if choice.finish_reason:
                        finish_reasons.append(choice.finish_reason)
                    for part in _delta_chunks(choice.delta, calls):
                        yield part
        except openai.APIStatusError as exc:
            raise status_error(self._name, request.model, exc.status_code, exc.message, exc.response.headers) from None
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            raise connection_error(self._name, exc) from None
        except openai.APIError as exc:  # an error event inside the stream
            raise ProviderError(f"{self._name} stream error: {exc.message}", retryable=True) from None
        for index in sorted(calls):
            call = calls[index]
            yield parse_arguments(call.call_id or f"call_{index}", call.name, "".join(call.arguments))
