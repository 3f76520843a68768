"""OpenAI's Chat Completions wire format, written once: the JSON of a streamed `chat.completion.chunk`
and of a whole `chat.completion`, their server-sent events, and an error body, as api.openai.com
sends them and the official `openai` SDK reads them. The offline server (tokentail/offline.py)
speaks it, and so do the tests' fake OpenAI servers (tests/servers/fake_llm.py).

A streamed answer is: a first chunk with the role, the text in `content` deltas, each tool call as a
head (its `index`, `id` and name, empty arguments) and then fragments of its arguments, a chunk with
the `finish_reason` and an empty delta, a chunk with no choices and the `usage` (only when the
request asked for it with `stream_options.include_usage`), then `data: [DONE]`.
"""

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


def sse(data: Any) -> bytes:
    """One server-sent event of `data` (JSON, or a string as it is)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A `chat.completion.chunk`: one choice with `delta` (and `finish_reason`), or none (`delta`
    None: the usage chunk)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def role_delta() -> dict[str, Any]:
    return {"role": "assistant", "content": ""}


def tool_call_head(index: int, call_id: str, name: str) -> dict[str, Any]:
    """The delta that opens a streamed tool call: its id and name, arguments to follow."""
    return {
        "tool_calls": [{"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]
    }


def tool_call_arguments(index: int, fragment: str) -> dict[str, Any]:
    """A delta with the next fragment of the arguments (JSON text) of the call at `index`."""
    return {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}


def completion(
    completion_id: str,
    model: str,
    created: int,
    text: str,
    tool_calls: list[tuple[str, str, str]],
    finish_reason: str,
    usage: dict[str, int],
) -> dict[str, Any]:
    """A whole `chat.completion` (a request with `stream` false): its text (null when empty, as with
    a tool call) and its tool calls as (id, name, arguments JSON)."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in tool_calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
    }


def error(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict[str, Any]:
    """An error body: the response of a refused request, or an event that ends a stream that failed."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}
