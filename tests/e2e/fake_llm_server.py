"""A local server speaking OpenAI's and Anthropic's streaming wire formats, for worker processes.

It answers in a scripted way: offered `current_time` and asked about the time, it calls the tool
first; given tool results, it reports them; otherwise it echoes. A wrong API key gets 401. Asked
"slowly", its answer after the tool is long (SLOW_WORDS words) and comes a piece every 50 ms; a test
that must act mid-text holds it there (`hold_slow_answers`: its first HOLD_AT pieces, then it waits
until the test releases it), never by its length. It continues a partial answer as each API says (Anthropic: a final
assistant message; vLLM: `continue_final_message`): with only what follows it. It keeps the body of
every request, which `GET /requests` returns.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers.fake_llm import anthropic_stream, openai_stream

API_KEY = "e2e-key"


SLOW_WORDS = 200
HOLD_AT = 12  # chunks of a held slow answer sent before it waits
REQUESTS: list[dict[str, Any]] = []


class Hold:
    """Slow answers wait after HOLD_AT chunks until `released` is set (for good: a later request, the
    takeover's, goes through at once); `reached` is set when one waits."""

    def __init__(self) -> None:
        self.reached, self.released = asyncio.Event(), asyncio.Event()


_hold: Hold | None = None


def hold_slow_answers() -> Hold:
    """From now on, until the server stops or it is released, slow answers wait mid-text (the server
    runs in the test's own event loop: tests/e2e/conftest.py `llm_url`)."""
    global _hold
    _hold = Hold()
    return _hold


def clear_hold() -> None:
    global _hold
    if _hold is not None:
        _hold.released.set()
    _hold = None


def slow_answer(tool_result: str) -> str:
    return f"The time is {tool_result}." + "".join(f" Word {i}." for i in range(SLOW_WORDS))


def _plan(last_text: str, tool_results: list[str], tool_names: list[str], slow: bool) -> tuple[list[str], bool]:
    """The answer's text parts, and whether to call current_time instead."""
    if tool_results and slow:
        text = slow_answer(", ".join(tool_results))
        return [text[i : i + 8] for i in range(0, len(text), 8)], False
    if tool_results:
        return ["The time ", "is ", ", ".join(tool_results), "."], False
    if "time" in last_text and "current_time" in tool_names:
        return ["Checking the clock."], True
    return ["You ", "said: ", last_text], False


async def openai_chat(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {API_KEY}":
        return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401)
    body = await request.json()
    REQUESTS.append(body)
    messages = body["messages"]
    prefix = ""
    if messages[-1]["role"] == "assistant" and (body.get("continue_final_message") or messages[-1].get("prefix")):
        prefix, messages = messages[-1]["content"], messages[:-1]
    # The results the model is given now: the tool messages that end the conversation (a user message
    # after them, a steer, is answered instead).
    trailing = len(messages) - next((i for i, m in enumerate(reversed(messages)) if m["role"] != "tool"), 0)
    results = [m["content"] for m in messages[trailing:]]
    names = [t["function"]["name"] for t in body.get("tools", [])]
    slow = any("slowly" in (m.get("content") or "") for m in messages if m["role"] == "user")
    last = messages[-1].get("content") or ""
    text, call = _plan(last if isinstance(last, str) else "", results, names, slow)
    calls = [(0, "call_time", "current_time", ['{"timez', 'one": "UTC"}'])] if call else []
    return _stream(openai_stream(_after(prefix, text), calls), slow, held=slow and bool(results))


async def anthropic_messages(request: Request) -> Response:
    # anthropic 2.x sends the key as a bearer token; earlier SDKs used x-api-key.
    if API_KEY not in (
        request.headers.get("x-api-key"),
        request.headers.get("authorization", "").removeprefix("Bearer "),
    ):
        return JSONResponse(
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, 401
        )
    body = await request.json()
    REQUESTS.append(body)
    messages = body["messages"]
    prefix = ""
    if messages[-1]["role"] == "assistant":  # a prefill: the answer goes on from it
        prefix, messages = messages[-1]["content"], messages[:-1]
    last = messages[-1]
    blocks: list[Any] = last["content"] if isinstance(last["content"], list) else []
    results = [b["content"] for b in blocks if b.get("type") == "tool_result"]
    names = [t["name"] for t in body.get("tools", [])]
    slow = any("slowly" in m["content"] for m in messages if m["role"] == "user" and isinstance(m["content"], str))
    text, call = _plan(last["content"] if isinstance(last["content"], str) else "", results, names, slow)
    uses = [("toolu_time", "current_time", ['{"timezone":', ' "UTC"}'])] if call else []
    return _stream(anthropic_stream(_after(prefix, text), uses), slow, held=slow and bool(results))


def _after(prefix: str, parts: list[str]) -> list[str]:
    """What follows `prefix` in the answer made of `parts` (a model continuing it)."""
    text = "".join(parts)
    if not prefix:
        return parts
    assert text.startswith(prefix), f"{prefix!r} does not start {text!r}"
    rest = text[len(prefix) :]
    return [rest[i : i + 8] for i in range(0, len(rest), 8)]


async def requests(request: Request) -> Response:
    return JSONResponse(REQUESTS)


def _stream(chunks: list[bytes], slow: bool, held: bool) -> StreamingResponse:
    """`chunks`, each 50 ms after the one before if `slow`; the slow answer after the tool (`held`)
    waits after HOLD_AT of them while slow answers are held."""
    hold = _hold if held else None

    async def body() -> AsyncIterator[bytes]:
        for i, chunk in enumerate(chunks):
            yield chunk
            if hold is not None and i + 1 == HOLD_AT:
                hold.reached.set()
                await hold.released.wait()
            if slow:
                await asyncio.sleep(0.05)

    return StreamingResponse(body(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/v1/chat/completions", openai_chat, methods=["POST"]),
        Route("/v1/messages", anthropic_messages, methods=["POST"]),
        Route("/requests", requests),
    ]
)
