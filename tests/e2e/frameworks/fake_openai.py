"""A local OpenAI Chat Completions server for the framework adapters' tests: every framework takes a
base URL, so each one's own OpenAI client streams from here, on the real wire format.

It plays a weather assistant. Offered a tool named `get_weather` (or `<plugin>-get_weather`, as
Semantic Kernel names a plugin's function) and asked about a city, it calls the tool first (its
arguments in fragments, as OpenAI streams them); given the tool's result, it answers with it;
otherwise it echoes. `usage` comes last when asked for (`stream_options`).
A model named `slow-<n>` streams `n` extra words at 20 per second, so that a test can cancel or kill
the run mid-answer. The server records each request and whether its client went away before the
answer ended (`/_log`), so that a test can tell that a cancel stopped the model's stream.
"""

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers.fake_llm import openai_stream
from tests.support.waiting import eventually_sync
from tokentail.redis_server import free_port

API_KEY = "frameworks-key"
WEATHER = {"city": "Paris", "temperature_c": 21, "sky": "sunny"}
SLOW_WORDS_PER_SECOND = 20


@dataclass
class Call:
    model: str
    messages: list[dict[str, Any]]
    tools: list[str]
    finished: bool = False  # the whole answer was sent
    disconnected: bool = False  # the client went away before it was


CALLS: list[Call] = []


def _answer(body: dict[str, Any]) -> tuple[list[str], list[tuple[int, str, str, list[str]]]]:
    messages = body["messages"]
    tools = [t["function"]["name"] for t in body.get("tools", [])]
    results = [m["content"] for m in messages if m["role"] == "tool"]
    last = next((m.get("content") or "" for m in reversed(messages) if m["role"] == "user"), "")
    if isinstance(last, list):  # content parts
        last = " ".join(part.get("text", "") for part in last)
    if results:
        return ["The weather ", "tool says: ", str(results[-1]), "."], []
    tool = next((name for name in tools if name.rpartition("-")[2] == "get_weather"), None)
    if tool is not None and re.search(r"weather|paris", last, re.I):
        return [], [(0, "call_weather_1", tool, ['{"ci', 'ty": "Paris"}'])]
    return ["You ", "said: ", last], []


async def chat_completions(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {API_KEY}":
        return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401)
    body = await request.json()
    call = Call(body["model"], body["messages"], [t["function"]["name"] for t in body.get("tools", [])])
    CALLS.append(call)
    text, tool_calls = _answer(body)
    slow = re.fullmatch(r"slow-(\d+)", body["model"])
    if slow and text:
        text += [f" word{i}" for i in range(int(slow.group(1)))]
    chunks = openai_stream(text, tool_calls, usage=(20, len(text) + 5))
    if not (body.get("stream_options") or {}).get("include_usage"):
        chunks = [chunk for chunk in chunks if b'"usage"' not in chunk]
    if not body.get("stream"):
        return JSONResponse({"error": {"message": "this fake only streams"}}, 400)

    async def stream() -> AsyncIterator[bytes]:
        try:
            for chunk in chunks:
                yield chunk
                if slow:
                    await asyncio.sleep(1 / SLOW_WORDS_PER_SECOND)
            call.finished = True
        except asyncio.CancelledError:  # Starlette cancels the body when the client disconnects
            call.disconnected = True
            raise
        finally:
            if not call.finished:
                call.disconnected = True

    return StreamingResponse(stream(), media_type="text/event-stream")


async def log(request: Request) -> Response:
    return JSONResponse([asdict(call) for call in CALLS])


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/_log", log, methods=["GET"]),
    ]
)


@contextmanager
def serving() -> Iterator[str]:
    """The server on a loopback port, in a thread of this process; yields its `/v1` base URL."""
    CALLS.clear()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually_sync(lambda: server.started, interval=0.01, what="the fake OpenAI server started")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


def calls() -> list[Call]:
    return list(CALLS)


def dumps() -> str:
    return json.dumps([asdict(call) for call in CALLS], indent=1)
