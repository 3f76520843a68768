"""A local server speaking OpenAI's and Anthropic's streaming wire formats, for worker processes.

It answers in a scripted way: offered `current_time` and asked about the time, it calls the tool
first; given tool results, it reports them; otherwise it echoes. A wrong API key gets 401.
"""

from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fake_llm import anthropic_stream, openai_stream

API_KEY = "e2e-key"


def _plan(last_text: str, tool_results: list[str], tool_names: list[str]) -> tuple[list[str], bool]:
    """The answer's text parts, and whether to call current_time instead."""
    if tool_results:
        return ["The time ", "is ", ", ".join(tool_results), "."], False
    if "time" in last_text and "current_time" in tool_names:
        return ["Checking the clock."], True
    return ["You ", "said: ", last_text], False


async def openai_chat(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {API_KEY}":
        return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401)
    body = await request.json()
    messages = body["messages"]
    results = [m["content"] for m in messages if m["role"] == "tool"]
    names = [t["function"]["name"] for t in body.get("tools", [])]
    text, call = _plan(messages[-1].get("content") or "", results, names)
    calls = [(0, "call_time", "current_time", ['{"timez', 'one": "UTC"}'])] if call else []
    return _stream(openai_stream(text, calls))


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
    last = body["messages"][-1]
    blocks: list[Any] = last["content"] if isinstance(last["content"], list) else []
    results = [b["content"] for b in blocks if b.get("type") == "tool_result"]
    names = [t["name"] for t in body.get("tools", [])]
    text, call = _plan(last["content"] if isinstance(last["content"], str) else "", results, names)
    uses = [("toolu_time", "current_time", ['{"timezone":', ' "UTC"}'])] if call else []
    return _stream(anthropic_stream(text, uses))


def _stream(chunks: list[bytes]) -> StreamingResponse:
    def body() -> Iterator[bytes]:
        yield from chunks

    return StreamingResponse(body(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/v1/chat/completions", openai_chat, methods=["POST"]),
        Route("/v1/messages", anthropic_messages, methods=["POST"]),
    ]
)
