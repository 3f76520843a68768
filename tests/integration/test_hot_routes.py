"""The hot routes (gateway/hot_routes.py) answer as the FastAPI routes they stand for.

Two gateways on real uvicorn, the same settings (auth, CORS, a small body limit, a run budget and a
stream limit that the requests run into), each on its own key prefix: one as the app is, one with
its hot routes taken out, so FastAPI's routes answer. The same requests go to both, in the same
order, and every answer must be the same: status, headers, body (ids, tokens and ports aside),
the metrics each request moved and the log lines it wrote. Then what keeps them the same: what the
hot routes pass through, and what their FastAPI routes declare, pinned.
"""

import asyncio
import logging
import re
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fixtures.stack import Gateway
from tests.integration.test_auth import KEY_A, KEY_B, SECRET
from tests.support.waiting import eventually
from tokentail.gateway import cors, deps
from tokentail.gateway.app import create_app
from tokentail.gateway.hot_routes import HotRoute
from tokentail.gateway.routes import events, sessions
from tokentail.shared.plumbing.logs import RateLimitedLogger
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys

ALLOWED_ORIGIN = "http://app.example"
SETTINGS = {
    "api_keys": SecretStr(f"acme:{KEY_A},beta:{KEY_B}"),
    "secret": SecretStr(SECRET),
    "cors_origins": [ALLOWED_ORIGIN],
    "max_request_bytes": 2048,
    "runs_per_minute": 16,
    "max_streams_per_tenant": 2,
}
SLOW = {"model": "scripted", "params": {"tokens": 50, "tokens_per_second": 1}}


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: str
    metrics: dict[str, float]
    logs: list[str] = field(default_factory=list)


def counters() -> dict[str, float]:
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for metric in REGISTRY.collect()
        if metric.name.startswith("tokentail") and metric.type == "counter"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


class Client:
    """Raw HTTP/1.1 requests to one gateway, each on its own connection, with what each changed."""

    def __init__(self, gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
        self.gateway = gateway
        self.caplog = caplog
        self.values: dict[str, str] = {}  # names a request's answer gave (ids, tokens), for later requests

    async def send(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
        chunked: bool = False, stream: bool = False,
    ) -> Answer:  # fmt: skip
        path = path.format(**self.values)
        head = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{self.gateway.port}", "connection: close"]
        head += [f"{name}: {value.format(**self.values)}" for name, value in (headers or {}).items()]
        if body is not None:
            head.append("transfer-encoding: chunked" if chunked else f"content-length: {len(body)}")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode()
        if body is not None:
            payload += (
                b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(body)) + b"0\r\n\r\n" if chunked else body
            )
        before = counters()
        self.caplog.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.gateway.port)
        try:
            writer.write(payload)
            raw_head = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = raw_head.decode().split("\r\n")[:-2]
            headers_got = [(n.lower(), v) for n, _, v in (line.partition(": ") for line in lines)]
            length = dict(headers_got).get("content-length")
            if method == "HEAD":
                data = b""
            elif stream and length is None:
                # The stream's head and its first event (or, with nothing queued, what closes it).
                data = await reader.readuntil(b"\n\n")
                data += await reader.readuntil(b"\n\n")
            else:
                data = await reader.readexactly(int(length)) if length is not None else await reader.read()
        finally:
            writer.close()
        await asyncio.sleep(0)
        moved = {name: value - before.get(name, 0) for name, value in counters().items() if value != before.get(name)}
        logs = [
            f"{r.name} {r.levelname} {r.getMessage()}" for r in self.caplog.records if r.name.startswith("tokentail")
        ]
        return Answer(int(status_line.split()[1]), headers_got, data.decode(errors="replace"), moved, logs)


def _chunks(body: bytes, size: int = 500) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def normalized(answer: Answer, client: Client) -> Answer:
    """The answer, with what differs between two gateways by design (their ports, the random ids and
    tokens they made, the times) replaced by names, in order of appearance."""
    seen: dict[str, str] = {}

    def name(match: re.Match[str]) -> str:
        return seen.setdefault(match.group(0), f"<{match.group(1)}{len(seen)}>")

    def clean(text: str) -> str:
        text = text.replace(client.gateway.url, "<gateway>").replace(f"127.0.0.1:{client.gateway.port}", "<host>")
        text = re.sub(r"\b(s_|r_)[A-Za-z0-9_-]{8,}", name, text)
        text = re.sub(r'"stream_token": ?"[^"]+"', '"stream_token": <token>', text)
        text = re.sub(r'"(ts|created_at|stream_token_expires_at)": ?[0-9.]+', r'"\1": <time>', text)
        return text

    headers = [(n, clean(v)) for n, v in answer.headers if n not in ("date", "server", "content-length")]
    return Answer(answer.status, headers, clean(answer.body), answer.metrics, [clean(line) for line in answer.logs])


# What each request sends: (method, path, headers, body, options). Paths and headers may name what an
# earlier answer gave ({session}, {token}, {chat_token}, {other}), read by `remember` below.
JSON = {"content-type": "application/json"}
KEY = {"authorization": f"Bearer {KEY_A}", **JSON}
OTHER_TENANT = {"authorization": f"Bearer {KEY_B}", **JSON}
SSE = {"accept": "text/event-stream"}
REQUESTS: list[tuple[str, str, dict[str, str], bytes | None, dict[str, Any]]] = [
    ("POST", "/v1/sessions", KEY, b'{"model": "scripted"}', {}),
    ("POST", "/v1/sessions", KEY, b'{"input": "hi", "model": "scripted", "token_scope": "chat"}', {}),
    ("POST", "/v1/sessions", {**KEY, "idempotency-key": "same-1"}, b'{"input": "x", "model": "scripted"}', {}),
    ("POST", "/v1/sessions", {**KEY, "idempotency-key": "same-1"}, b'{"input": "x", "model": "scripted"}', {}),
    ("POST", "/v1/sessions", KEY, b'{"chat_id": "chat-1"}', {}),
    ("POST", "/v1/sessions", KEY, b'{"chat_id": "chat-1"}', {}),
    ("POST", "/v1/sessions", OTHER_TENANT, b'{"input": "other", "model": "scripted"}', {"remember": "other"}),
    # refused: each answered by FastAPI's path on both gateways, or by the same code
    ("POST", "/v1/sessions", KEY, b'{"input": ', {}),  # not JSON
    ("POST", "/v1/sessions", KEY, b'{"input": 5, "token_scope": "all"}', {}),  # wrong types
    ("POST", "/v1/sessions", KEY, b'["a list"]', {}),
    ("POST", "/v1/sessions", KEY, b"", {}),
    ("POST", "/v1/sessions", {"authorization": f"Bearer {KEY_A}", "content-type": "text/plain"}, b"{}", {}),
    ("POST", "/v1/sessions", {"authorization": f"Bearer {KEY_A}"}, b"{}", {}),
    ("POST", "/v1/sessions", {**KEY, "idempotency-key": "bad key with spaces"}, b"{}", {}),
    ("POST", "/v1/sessions", KEY, b'{"input": "x", "model": "no-such-provider:x"}', {}),
    ("POST", "/v1/sessions", KEY, b'{"agent": "nobody"}', {}),
    ("POST", "/v1/sessions", JSON, b"{}", {}),  # no credentials
    ("POST", "/v1/sessions", {**JSON, "authorization": "Bearer wrong-key-0123456789"}, b"{}", {}),
    ("POST", "/v1/sessions", {**JSON, "authorization": "Basic abc"}, b"{}", {}),
    ("POST", "/v1/sessions", {**JSON, "authorization": "Bearer {token2}"}, b"{}", {}),  # a stream token: 403
    ("POST", "/v1/sessions", KEY, b'{"input": "' + b"x" * 3000 + b'"}', {}),  # 413, declared
    ("POST", "/v1/sessions", KEY, b'{"input": "' + b"x" * 3000 + b'"}', {"chunked": True}),  # 413, counted
    ("POST", "/v1/sessions", KEY, b'{"input": "small", "model": "scripted"}', {"chunked": True}),
    # CORS: an allowed page, a refused one (logged), a preflight
    ("POST", "/v1/sessions", {**KEY, "origin": ALLOWED_ORIGIN}, b'{"model": "scripted"}', {}),
    ("POST", "/v1/sessions", {**KEY, "origin": "http://evil.example"}, b'{"model": "scripted"}', {}),
    ("OPTIONS", "/v1/sessions", {"origin": ALLOWED_ORIGIN, "access-control-request-method": "POST"}, None, {}),
    # follow-up turns
    ("POST", "/v1/sessions/{session}/runs", KEY, b'{"input": "more", "multitask": "enqueue"}', {}),
    (
        "POST",
        "/v1/sessions/{session}/runs",
        {**JSON, "authorization": "Bearer {chat_token}"},
        b'{"input": "chat", "multitask": "enqueue"}',
        {},
    ),  # fmt: skip
    ("POST", "/v1/sessions/{session2}/runs", {**JSON, "authorization": "Bearer {token2}"}, b'{"input": "x"}', {}),
    (
        "POST",
        "/v1/sessions/{session}/runs",
        {**KEY, "idempotency-key": "t-1"},
        b'{"input": "i", "multitask": "enqueue"}',
        {},
    ),
    (
        "POST",
        "/v1/sessions/{session}/runs",
        {**KEY, "idempotency-key": "t-1"},
        b'{"input": "i", "multitask": "enqueue"}',
        {},
    ),
    ("POST", "/v1/sessions/{session}/runs", KEY, b'{"input": "busy"}', {}),  # 409: a run is active
    ("POST", "/v1/sessions/{session}/runs", KEY, b'{"multitask": "sometimes"}', {}),
    ("POST", "/v1/sessions/{other}/runs", KEY, b'{"input": "not mine"}', {}),  # another tenant's: 404
    ("POST", "/v1/sessions/s_nosuchsession000000/runs", KEY, b'{"input": "x"}', {}),
    ("POST", "/v1/sessions/not-a-session/runs", KEY, b'{"input": "x"}', {}),
    # streams
    ("GET", "/v1/sessions/{session}/events", {**SSE, "authorization": "Bearer {chat_token}"}, None, {"stream": True}),
    ("GET", "/v1/sessions/{session}/events?token={chat_token}&last_event_id=1", SSE, None, {"stream": True}),
    (
        "GET",
        "/v1/sessions/{session}/events?catch_up=snapshot",
        {**SSE, "authorization": f"Bearer {KEY_A}"},
        None,
        {"stream": True},
    ),  # fmt: skip
    (
        "GET",
        "/v1/sessions/{session}/events",
        {"accept": "application/x-ndjson", "authorization": "Bearer {chat_token}", "last-event-id": "2"},
        None,
        {"stream": True},
    ),  # fmt: skip
    ("GET", "/v1/sessions/{idle}/events", {**SSE, "authorization": f"Bearer {KEY_A}"}, None, {}),  # 204
    ("GET", "/v1/sessions/{session}/events?catch_up=all", {**SSE, "authorization": "Bearer {chat_token}"}, None, {}),
    ("GET", "/v1/sessions/{session}/events?last_event_id=x", {**SSE, "authorization": "Bearer {chat_token}"}, None, {}),
    (
        "GET",
        "/v1/sessions/{session}/events",
        {**SSE, "last-event-id": "-4", "authorization": "Bearer {chat_token}"},
        None,
        {},
    ),  # fmt: skip
    ("GET", "/v1/sessions/{other}/events", {**SSE, "authorization": f"Bearer {KEY_A}"}, None, {}),
    ("GET", "/v1/sessions/{session}/events", {**SSE, "authorization": "Bearer {token2}"}, None, {}),  # 403
    ("GET", "/v1/sessions/{session}/events", SSE, None, {}),  # 401
    (
        "GET",
        "/v1/sessions/{session}/events",
        {**SSE, "authorization": "Bearer {chat_token}", "origin": ALLOWED_ORIGIN},
        None,
        {"stream": True},
    ),  # fmt: skip
    ("HEAD", "/v1/sessions/{session}/events", {"authorization": "Bearer {chat_token}"}, None, {}),
    ("PUT", "/v1/sessions/{session}/events", {"authorization": "Bearer {chat_token}"}, None, {}),
    ("DELETE", "/v1/sessions", KEY, None, {}),
    # the tenant's run budget, spent: 429
    *[("POST", "/v1/sessions", KEY, b'{"input": "more", "model": "scripted"}', {})] * 4,
]


def remember(client: Client, index: int, answer: Answer, options: dict[str, Any]) -> None:
    """Keep what later requests name: the first session (idle), the second (a run queued: the one
    streamed and continued) and its chat token, the third and its read token, another tenant's session."""
    if answer.status not in (200, 201) or '"session_id"' not in answer.body:
        return
    found = dict(re.findall(r'"(session_id|stream_token)":"([^"]+)"', answer.body))
    if index == 0:
        client.values["idle"] = found["session_id"]
    if index == 1:
        client.values.update(session=found["session_id"], chat_token=found["stream_token"])
    if index == 2:
        client.values.update(session2=found["session_id"], token2=found["stream_token"])
    if options.get("remember"):
        client.values[options["remember"]] = found["session_id"]


@pytest.fixture(autouse=True)
def one_budget_minute(limits_clock: types.SimpleNamespace) -> None:
    """The tenants' run budgets count in minutes of the clock: a test that crossed into the next one
    would find its budget spent on one gateway and fresh on the other. The limits' clock stands still."""


@pytest.fixture
async def gateways(settings: Settings) -> AsyncIterator[tuple[Gateway, Gateway]]:
    hot = Gateway(settings.model_copy(update={**SETTINGS, "key_prefix": settings.key_prefix + "-hot"}))
    # TOKENTAIL_HOT_ROUTES=false: the same requests answered by FastAPI's routes.
    off = {**SETTINGS, "key_prefix": settings.key_prefix + "-doc", "hot_routes": False}
    documented = Gateway(settings.model_copy(update=off))
    assert not any(isinstance(route, HotRoute) for route in documented.app.router.routes)
    started = [await hot.start()]
    try:
        started.append(await documented.start())
        yield hot, documented
    finally:
        for gateway in started:
            await gateway.stop()


async def test_hot_routes_answer_as_their_fastapi_routes_do(
    gateways: tuple[Gateway, Gateway], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="tokentail")
    clients = [Client(gateway, caplog) for gateway in gateways]
    for index, (method, path, headers, body, options) in enumerate(REQUESTS):
        answers = []
        for client in clients:
            # The refused origin's warning is rate-limited per process: each gateway gets a fresh one.
            monkeypatch.setattr(cors, "_refused", RateLimitedLogger(logging.getLogger(cors.__name__), every_seconds=10))
            sending = {k: v for k, v in options.items() if k in ("chunked", "stream")}
            answer = await client.send(method, path, headers, body, **sending)
            remember(client, index, answer, options)
            answers.append(normalized(answer, client))
        hot, documented = answers
        what = f"request {index}: {method} {path}"
        assert hot.status == documented.status, f"{what}: {hot.body} / {documented.body}"
        assert hot.body == documented.body, what
        assert hot.headers == documented.headers, what
        assert hot.metrics == documented.metrics, what
        assert hot.logs == documented.logs, what


async def test_the_requests_cover_every_answer_the_issue_names(
    gateways: tuple[Gateway, Gateway], caplog: pytest.LogCaptureFixture
) -> None:
    """The parity above means something only if its requests reach each kind of answer: check that
    the hot gateway gave each (2xx, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429)."""
    client = Client(gateways[0], caplog)
    statuses = set()
    for index, (method, path, headers, body, options) in enumerate(REQUESTS):
        sending = {k: v for k, v in options.items() if k in ("chunked", "stream")}
        answer = await client.send(method, path, headers, body, **sending)
        remember(client, index, answer, options)
        statuses.add(answer.status)
    assert {200, 201, 202, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429} <= statuses


class Finished:
    """Counts the HTTP requests the app is done with: answered, or raised out of it to the server."""

    def __init__(self, app: ASGIApp, finished: list[str]) -> None:
        self.app = app
        self.finished = finished

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.finished.append(scope["path"])


CUT_SHORT = 20  # requests, as many as the issue sent


@pytest.mark.parametrize("hot", [True, False], ids=["hot-route", "fastapi-route"])
@pytest.mark.parametrize("path", ["/v1/sessions", "/v1/sessions/{session}/runs"])
async def test_a_body_its_client_cut_short_ends_quietly_and_creates_nothing(
    settings: Settings, redis: Redis, caplog: pytest.LogCaptureFixture, hot: bool, path: str
) -> None:
    """A client declares 1000 bytes of body, sends 10 and closes: FastAPI's route finds it gone while
    reading the body and answers 400 to nobody, with no log. The hot route logged an ERROR traceback
    for each (issue 52); it must end as FastAPI's does, and neither makes a session or a run."""
    gateway = Gateway(settings.model_copy(update={"max_request_bytes": 2048, "hot_routes": hot}))
    finished: list[str] = []
    gateway.app.add_middleware(Finished, finished=finished)
    await gateway.start()
    try:
        async with httpx2.AsyncClient(base_url=gateway.url) as http:
            session = (await http.post("/v1/sessions", json={})).json()["session_id"]
        caplog.clear()
        caplog.set_level(logging.INFO)
        head = (
            f"POST {path.format(session=session)} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            "content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
        )
        for _ in range(CUT_SHORT):
            _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(head.encode() + b'{"input": ')  # 10 of the 1000 bytes
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        # Done with each: the app returned or raised (counted), and the server's task for it ended
        # (where uvicorn logs what the app raised).
        await eventually(lambda: len(finished) == 1 + CUT_SHORT and not gateway.server.server_state.tasks)
        logged = [f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]
    finally:
        await gateway.stop()
    assert logged == []
    keys = Keys(settings.key_prefix)
    assert [key async for key in redis.scan_iter(match=f"{settings.key_prefix}:*:meta")] == [
        keys.session(session).meta.encode()
    ]
    assert await redis.hlen(keys.session(session).runs) == 0  # type: ignore[misc]


def middleware_chain(app: Any) -> list[str]:
    """The layers a request passes through, from the server down to the router."""
    layers, layer = [], app.build_middleware_stack()
    while layer is not app.router:
        layers.append(type(layer).__name__)
        layer = layer.app
    return [*layers, type(layer).__name__]


def test_hot_routes_are_tried_first_below_every_middleware(settings: Settings) -> None:
    """Below every middleware and the app's error handlers (ExceptionMiddleware), as FastAPI's
    routes are: the router tries the hot routes first. A middleware added later wraps both."""
    app = create_app(settings)
    assert middleware_chain(app) == [
        "Detaching",  # the gateway's: event streams outlive the framework's call (app.py)
        "ServerErrorMiddleware",  # Starlette's: a 500 for what nothing else answered
        "ExceptionTelemetryMiddleware",  # FastAPI's
        "AppBodyLimitMiddleware",  # FastAPI's (no limit of its own set: BodySizeLimit is the gateway's)
        "Cors",
        "BodySizeLimit",
        "ExceptionMiddleware",  # the app's error handlers (gateway/errors.py)
        "AsyncExitStackMiddleware",  # FastAPI's
        "APIRouter",  # the hot routes first, then FastAPI's
    ]
    hot = [route for route in app.router.routes if isinstance(route, HotRoute)]
    assert app.router.routes[: len(hot)] == hot
    assert [route.name for route in hot] == ["create_session", "create_run", "stream_events"]


async def test_a_middleware_added_later_sees_the_hot_requests(settings: Settings) -> None:
    seen: list[str] = []

    class Probe:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                seen.append(f"{scope['method']} {scope['path']}")
            await self.app(scope, receive, send)

    gateway = Gateway(settings)
    gateway.app.add_middleware(Probe)
    await gateway.start()
    try:
        async with httpx2.AsyncClient(base_url=gateway.url) as http:
            created = (await http.post("/v1/sessions", json={"model": "scripted"})).json()
            session = created["session_id"]
            assert (await http.post(f"/v1/sessions/{session}/runs", json={"input": "x", **SLOW})).status_code == 202
            async with http.stream("GET", f"/v1/sessions/{session}/events") as stream:
                assert stream.status_code == 200
    finally:
        await gateway.stop()
    assert seen == [
        "POST /v1/sessions",
        f"POST /v1/sessions/{session}/runs",
        f"GET /v1/sessions/{session}/events",
    ]


# What the FastAPI routes the hot routes stand for declare: their parameters and their one
# dependency, as FastAPI solves them. The hot handlers (gateway/hot_routes.py) read the parameters
# by hand and call the same dependency (checked by identity below): if one changes here, change the
# handler to read it the same way, then this list.
CREDENTIALS = ["  depends bearer: HTTPBearer", "  depends token: APIKeyQuery"]
DECLARED = {
    "create_session": [
        "header idempotency_key Idempotency-Key",
        "body body body",
        "depends caller: _caller_who.<locals>.caller_who",
        *CREDENTIALS,
    ],
    "create_run": [
        "header idempotency_key Idempotency-Key",
        "body body body",
        "depends access: _session_access.<locals>.access",
        "  path session_id session_id",
        *CREDENTIALS,
    ],
    "stream_events": [
        "query last_event_id last_event_id",
        "query catch_up catch_up",
        "query run run",
        "query subtree subtree",
        "header last_event_id_header Last-Event-ID",
        "header accept accept",
        "depends access: _session_access.<locals>.access",
        "  path session_id session_id",
        *CREDENTIALS,
    ],
}
# The one dependency of each: the very function its hot handler calls.
DEPENDENCY = {
    "create_session": deps.api_key_caller,
    "create_run": deps.chat_session,
    "stream_events": deps.readable_session,
}


def declared(dependant: Any, depth: int = 0) -> list[str]:
    indent = "  " * depth
    lines = [
        f"{indent}{kind.removesuffix('_params')} {param.name} {param.alias}"
        for kind in ("path_params", "query_params", "header_params", "body_params")
        for param in getattr(dependant, kind)
    ]
    for sub in dependant.dependencies:
        lines.append(f"{indent}depends {sub.name}: {getattr(sub.call, '__qualname__', type(sub.call).__name__)}")
        lines += declared(sub, depth + 1)
    return lines


def test_what_the_fastapi_routes_declare_is_what_the_hot_handlers_read() -> None:
    routes = {r.name: r for r in (*sessions.router.routes, *events.router.routes) if isinstance(r, APIRoute)}
    for name, lines in DECLARED.items():
        assert declared(routes[name].dependant) == lines, name
        (dependency,) = routes[name].dependant.dependencies
        assert dependency.call is DEPENDENCY[name], name
