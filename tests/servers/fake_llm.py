"""OpenAI and Anthropic streaming wire formats, served through httpx2.MockTransport to the official SDKs."""

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
import openai

from tokentail import openai_wire


def sse(data: Any, event: str | None = None) -> bytes:
    """An event of Anthropic's stream, which names each (OpenAI's: openai_wire.sse)."""
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


def openai_chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    return openai_wire.sse(openai_wire.chunk("chatcmpl-1", "m", 1, delta, finish) | extra)


def openai_stream(
    text: list[str],
    tool_calls: Sequence[tuple[int, str, str, list[str]]] = (),
    usage: tuple[int, int] = (10, 5),
) -> list[bytes]:
    """Text deltas, then tool calls (index, id, name, argument fragments) interleaved fragment by
    fragment, on the wire format tokentail's offline server speaks too (tokentail/openai_wire.py)."""
    chunks = [openai_chunk(openai_wire.role_delta())]
    chunks += [openai_chunk({"content": part}) for part in text]
    for index, call_id, name, _ in tool_calls:
        chunks.append(openai_chunk(openai_wire.tool_call_head(index, call_id, name)))
    longest = max((len(fragments) for *_, fragments in tool_calls), default=0)
    for position in range(longest):  # parallel calls' fragments interleave
        for index, _, _, fragments in tool_calls:
            if position < len(fragments):
                chunks.append(openai_chunk(openai_wire.tool_call_arguments(index, fragments[position])))
    chunks.append(openai_chunk({}, finish="tool_calls" if tool_calls else "stop"))
    chunks.append(openai_chunk(None, usage=openai_wire.usage(*usage)))
    chunks.append(openai_wire.DONE)
    return chunks


def anthropic_stream(
    text: list[str],
    tool_uses: Sequence[tuple[str, str, list[str]]] = (),
    usage: tuple[int, int] = (12, 30),
    thinking: Sequence[str] = (),
) -> list[bytes]:
    """message_start, a thinking block (from `thinking_delta`s, then its `signature_delta`) if any,
    a text block, tool_use blocks built from input_json_delta fragments, pings, usage."""
    message: dict[str, Any] = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": usage[0], "output_tokens": 1},
    }  # fmt: skip
    events = [sse({"type": "message_start", "message": message}, "message_start"), sse({"type": "ping"}, "ping")]
    deltas = [{"type": "thinking_delta", "thinking": part} for part in thinking]
    deltas += [{"type": "signature_delta", "signature": "c2lnbmF0dXJl"}]
    blocks = [({"type": "thinking", "thinking": "", "signature": ""}, deltas)] if thinking else []
    blocks.append(({"type": "text", "text": ""}, [{"type": "text_delta", "text": part} for part in text]))
    for index, (start, block_deltas) in enumerate(blocks):
        events.append(
            sse({"type": "content_block_start", "index": index, "content_block": start}, "content_block_start")
        )
        for delta in block_deltas:
            events.append(sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"))
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    for offset, (call_id, name, fragments) in enumerate(tool_uses, start=len(blocks)):
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        events.append(
            sse({"type": "content_block_start", "index": offset, "content_block": block}, "content_block_start")
        )
        for fragment in fragments:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            events.append(sse({"type": "content_block_delta", "index": offset, "delta": delta}, "content_block_delta"))
        events.append(sse({"type": "ping"}, "ping"))
        events.append(sse({"type": "content_block_stop", "index": offset}, "content_block_stop"))
    stop = "tool_use" if tool_uses else "end_turn"
    events.append(
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": usage[1]},
            },
            "message_delta",
        )
    )
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return events


def anthropic_error(kind: str) -> bytes:
    return sse({"type": "error", "error": {"type": kind, "message": kind.replace("_", " ")}}, "error")


@dataclass
class Reply:
    status: int = 200
    chunks: list[bytes] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    stall_after: int | None = None  # send this many chunks, then go silent


@dataclass
class FakeLLM:
    """Answers each request with the next Reply, and keeps the requests' JSON bodies."""

    replies: list[Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content or b"{}"))
        reply = self.replies.pop(0)
        if reply.status != 200:
            error = {"error": {"type": "error", "message": f"status {reply.status}"}}
            return httpx2.Response(reply.status, json=error, headers=reply.headers)

        async def body() -> AsyncIterator[bytes]:
            for i, chunk in enumerate(reply.chunks):
                if reply.stall_after is not None and i >= reply.stall_after:
                    await asyncio.sleep(3600)
                yield chunk

        headers = {"content-type": "text/event-stream"} | reply.headers
        return httpx2.Response(200, headers=headers, content=body())

    def openai(self) -> openai.AsyncOpenAI:
        transport = httpx2.MockTransport(self.handler)
        return openai.AsyncOpenAI(
            api_key="test-key",
            base_url="http://llm.test/v1",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
        )

    def anthropic(self) -> anthropic.AsyncAnthropic:
        transport = httpx2.MockTransport(self.handler)
        return anthropic.AsyncAnthropic(
            api_key="test-key",
            base_url="http://llm.test",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
        )
