"""The offline scripted model behind OpenAI's Chat Completions API: `tokentail offline`, and
`tokentail dev --offline`, which points its workers' OpenAI clients at it.

Any code that takes an OpenAI base URL (every framework adapter's example, the official SDK, your
own agent) then runs with no API key and no network:

    tokentail offline --port 8100
    OPENAI_BASE_URL=http://127.0.0.1:8100/v1 OPENAI_API_KEY=offline python my_agent.py

`POST /v1/chat/completions` answers as the `scripted` model does in a worker (the same code,
worker/providers/scripted.py): streamed (`"stream": true`, with usage when asked by
`stream_options.include_usage`) or whole, on OpenAI's wire format (tokentail/openai_wire.py). Offered
tools, it calls the one the last user message is about (the calculator for arithmetic,
`get_weather` for "What is the weather in Paris?"), and given their results it answers with them.
`GET /v1/models` lists `scripted`; any model name is taken, and any API key.

The scripted model's own params may come as extra fields of the body (`extra_body` in the SDK):
`tokens`, `tokens_per_second` (25 when streamed; a whole answer does not wait), `first_token_seconds`,
`fail_at_token` and `due_stamps`. The sampling knobs (temperature, max_tokens, ...) are taken and ignored.
"""

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tokentail import openai_wire as wire
from tokentail.shared.vocabulary.params import RunParams
from tokentail.worker.providers.base import Message, ModelRequest, TextDelta, ToolCall, Usage
from tokentail.worker.providers.scripted import ScriptedFailure, ScriptedProvider
from tokentail.worker.tools import ToolSpec

logger = logging.getLogger(__name__)

MODEL = "scripted"
# The scripted model's own params, which a request may give as fields of its body.
SCRIPTED_PARAMS = ("tokens", "tokens_per_second", "first_token_seconds", "fail_at_token", "due_stamps")
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}

_provider = ScriptedProvider()


class BadRequest(ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ChatRequest:
    """A Chat Completions request, as the scripted model takes it."""

    model: str
    request: ModelRequest
    stream: bool
    include_usage: bool


def parse_chat_request(body: Any) -> ChatRequest:
    """The request in a Chat Completions body; BadRequest (naming the field) for what it cannot take."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise BadRequest("messages must be a non-empty list", "messages")
    messages = [_message(raw, index) for index, raw in enumerate(raw_messages)]
    if body.get("n", 1) != 1:
        raise BadRequest("the offline model gives one choice: n must be 1", "n")
    tools = [] if body.get("tool_choice") == "none" else _tools(body.get("tools") or [])
    chosen = body.get("tool_choice")
    if isinstance(chosen, dict):  # {"type": "function", "function": {"name": ...}}: only that one is offered
        name = (chosen.get("function") or {}).get("name")
        tools = [tool for tool in tools if tool.name == name]
    stream = body.get("stream") is True
    knobs = {key: body[key] for key in SCRIPTED_PARAMS if body.get(key) is not None}
    if not stream:
        knobs.setdefault("tokens_per_second", 0)  # a whole answer: no reason to wait for it
    try:
        params = RunParams.model_validate(knobs)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(map(str, problem["loc"]))
        raise BadRequest(f"{field}: {problem['msg']}", field) from None
    model = body.get("model")
    return ChatRequest(
        model=model if isinstance(model, str) and model else MODEL,
        request=ModelRequest(model="", messages=messages, tools=tools, params=params),
        stream=stream,
        include_usage=stream and bool((body.get("stream_options") or {}).get("include_usage")),
    )


def _message(raw: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if not isinstance(raw, dict) or raw.get("role") not in _ROLES:
        raise BadRequest(f"{where} must be an object whose role is one of {', '.join(_ROLES)}", where)
    role = _ROLES[raw["role"]]
    content = _text(raw.get("content"), where)
    if role == "tool":
        return Message("tool", content, call_id=str(raw.get("tool_call_id") or ""))
    calls = tuple(_call(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(raw.get("tool_calls") or ()))
    return Message(role, content, tool_calls=calls)  # type: ignore[arg-type]  # one of the four roles


def _text(content: Any, where: str) -> str:
    """A message's text: a string, or the text of its content parts (images and audio are left out)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    raise BadRequest(f"{where}.content must be a string or a list of content parts", f"{where}.content")


def _call(raw: Any, where: str) -> ToolCall:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequest(f"{where} must be a function call with a name", where)
    text = function.get("arguments") or "{}"
    try:
        arguments = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        arguments = None
    if not isinstance(arguments, dict):
        return ToolCall(str(raw.get("id") or ""), function["name"], {}, invalid_arguments=str(text))
    return ToolCall(str(raw.get("id") or ""), function["name"], arguments)


def _tools(raw: Any) -> list[ToolSpec]:
    if not isinstance(raw, list):
        raise BadRequest("tools must be a list", "tools")
    tools = []
    for index, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"tools[{index}] must be a function with a name", f"tools[{index}]")
        parameters = function.get("parameters")
        tools.append(
            ToolSpec(
                function["name"],
                str(function.get("description") or ""),
                parameters if isinstance(parameters, dict) else {},
            )
        )
    return tools


def _arguments_fragments(arguments: dict[str, Any]) -> list[str]:
    """A call's arguments as JSON in two fragments, as a model streams them (clients join them)."""
    text = json.dumps(arguments, ensure_ascii=False)
    middle = len(text) // 2
    return [text[:middle], text[middle:]]


async def chat_completions(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:  # not JSON, or not UTF-8
        return JSONResponse(wire.error("the body is not JSON"), 400)
    try:
        chat = parse_chat_request(body)
    except BadRequest as exc:
        return JSONResponse(wire.error(str(exc), param=exc.param), 400)
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    if chat.stream:
        return StreamingResponse(_stream(chat, completion_id, created), media_type="text/event-stream")
    text: list[str] = []
    calls: list[tuple[str, str, str]] = []
    spent = Usage(0, 0)
    try:
        async for piece in _provider.stream(chat.request):
            if isinstance(piece, TextDelta):
                text.append(piece.text)
            elif isinstance(piece, ToolCall):
                calls.append((piece.call_id, piece.name, json.dumps(piece.arguments, ensure_ascii=False)))
            elif isinstance(piece, Usage):
                spent = piece
    except ScriptedFailure as exc:
        return JSONResponse(wire.error(str(exc), "server_error"), 500)
    finish = "tool_calls" if calls else "stop"
    body = wire.completion(
        completion_id,
        chat.model,
        created,
        "".join(text),
        calls,
        finish,
        wire.usage(spent.input_tokens, spent.output_tokens),
    )
    return JSONResponse(body)


async def _stream(chat: ChatRequest, completion_id: str, created: int) -> AsyncIterator[bytes]:
    def event(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
        return wire.sse(wire.chunk(completion_id, chat.model, created, delta, finish, usage))

    yield event(wire.role_delta())
    calls = 0
    spent = Usage(0, 0)
    try:
        async for piece in _provider.stream(chat.request):
            if isinstance(piece, TextDelta):
                yield event({"content": piece.text})
            elif isinstance(piece, ToolCall):
                yield event(wire.tool_call_head(calls, piece.call_id, piece.name))
                for fragment in _arguments_fragments(piece.arguments):
                    yield event(wire.tool_call_arguments(calls, fragment))
                calls += 1
            elif isinstance(piece, Usage):
                spent = piece
    except ScriptedFailure as exc:  # as OpenAI ends a stream that failed: an error event, no [DONE]
        yield wire.sse(wire.error(str(exc), "server_error"))
        return
    yield event({}, "tool_calls" if calls else "stop")
    if chat.include_usage:
        yield event(None, usage=wire.usage(spent.input_tokens, spent.output_tokens))
    yield wire.DONE


async def models(request: Request) -> Response:
    return JSONResponse(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tokentail"}]}
    )


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/healthz", ready, methods=["GET"]),
        Route("/readyz", ready, methods=["GET"]),
    ]
)


def serve(host: str, port: int, log_level: str = "info") -> None:
    """Serve the offline model's OpenAI API until stopped (Ctrl-C, SIGTERM)."""
    logger.info("the offline model's OpenAI API: http://%s:%d/v1 (any API key)", host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=None)
