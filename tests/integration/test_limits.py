"""Per-tenant limits (runs per minute, open streams), request size and CORS."""

import asyncio
import contextlib
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
import websockets
from pydantic import SecretStr
from redis.asyncio import Redis

from tests.integration.test_auth import KEY_A, KEY_B, SECRET, SLOW, bearer, ws_exchange, ws_url
from tests.integration.test_chat_protocols import agent_input, chat_body
from tests.support.sessions import held
from tests.support.waiting import eventually, scaled
from tests.support.writes import AllWrites
from tokentail.gateway import cors
from tokentail.shared.plumbing.logs import RateLimitedLogger
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.events import MessageDelta
from tokentail.shared.vocabulary.records import PUBLIC_TENANT

AUTH = {"api_keys": SecretStr(f"acme:{KEY_A},beta:{KEY_B}"), "secret": SecretStr(SECRET)}


@pytest.mark.usefixtures("limits_clock")  # the minute held still: crossing into the next finds a fresh budget
async def test_runs_per_minute_are_counted_per_tenant_with_retry_after(start_gateway: Callable[..., Any]) -> None:
    gateway = await start_gateway(runs_per_minute=2, **AUTH)
    async with httpx2.AsyncClient(base_url=gateway.url) as http:
        created = await http.post("/v1/sessions", json=SLOW, headers=bearer(KEY_A))
        session_id = created.json()["session_id"]
        run = await http.post(
            f"/v1/sessions/{session_id}/runs", json={"input": "x", "multitask": "enqueue"}, headers=bearer(KEY_A)
        )
        assert (created.status_code, run.status_code) == (201, 202)
        for refused in (
            await http.post("/v1/sessions", json=SLOW, headers=bearer(KEY_A)),
            await http.post(
                f"/v1/sessions/{session_id}/runs", json={"input": "x", "multitask": "enqueue"}, headers=bearer(KEY_A)
            ),
        ):
            assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limited"
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Another tenant has a budget of its own.
        assert (await http.post("/v1/sessions", json=SLOW, headers=bearer(KEY_B))).status_code == 201


@pytest.mark.usefixtures("limits_clock")
async def test_a_steer_spends_its_tenant_s_run_budget_as_a_run_does(start_gateway: Callable[..., Any]) -> None:
    gateway = await start_gateway(runs_per_minute=2, **AUTH)
    async with httpx2.AsyncClient(base_url=gateway.url, headers=bearer(KEY_A)) as http:
        created = await http.post("/v1/sessions", json=SLOW)
        steer_url = f"/v1/sessions/{created.json()['session_id']}/steer"
        assert (await http.post(steer_url, json={"input": "shorter"})).status_code == 202
        refused = await http.post(steer_url, json={"input": "shorter still"})
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limited"


async def test_open_streams_are_bounded_per_tenant_and_freed_when_closed(start_gateway: Callable[..., Any]) -> None:
    gateway = await start_gateway(max_streams_per_tenant=1, **AUTH)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as http:
        session = (await http.post("/v1/sessions", json=SLOW, headers=bearer(KEY_A))).json()
        params = {"token": session["stream_token"]}
        async with http.stream("GET", session["events_url"], params=params) as first:
            assert first.status_code == 200
            second = await http.get(session["events_url"], params=params)
            assert second.status_code == 429 and second.json()["error"]["type"] == "too_many_streams"
            assert int(second.headers["Retry-After"]) > 0
            error, code = await ws_exchange(ws_url(gateway, session["session_id"], token=session["stream_token"]))
            assert (error["error"]["type"], code) == ("too_many_streams", 4429)
            beta = (await http.post("/v1/sessions", json=SLOW, headers=bearer(KEY_B))).json()
            async with http.stream("GET", beta["events_url"], headers=bearer(KEY_B)) as other_tenant:
                assert other_tenant.status_code == 200

        # Closed: the slot is freed once the gateway sees the disconnect.
        async def sse_opens() -> None:
            async with http.stream("GET", session["events_url"], params=params) as again:
                assert again.status_code == 200

        async def ws_opens() -> str | bytes:
            async with websockets.connect(ws_url(gateway, session["session_id"], token=session["stream_token"])) as ws:
                first = await ws.recv()
            assert "too_many_streams" not in first
            return first

        await eventually(sse_opens, interval=0.05)
        assert "run.queued" in await eventually(ws_opens, interval=0.05)


async def test_oversized_bodies_are_refused_with_413(start_gateway: Callable[..., Any]) -> None:
    gateway = await start_gateway(max_request_bytes=2048)
    async with httpx2.AsyncClient(base_url=gateway.url) as http:
        big = {"input": "hi", "metadata": {"blob": "x" * 5000}}
        response = await http.post("/v1/sessions", json=big)
        assert response.status_code == 413 and response.json()["error"]["type"] == "input_too_large"

        async def chunked() -> Any:  # no Content-Length: counted as it arrives
            yield b'{"input": "hi", "metadata": {"blob": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}}'

        response = await http.post("/v1/sessions", content=chunked(), headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and response.json()["error"]["type"] == "input_too_large"
        assert (await http.post("/v1/sessions", json={"input": "hi"})).status_code == 201


async def test_cors_allows_only_the_listed_origins(start_gateway: Callable[..., Any]) -> None:
    gateway = await start_gateway(cors_origins=["https://app.example"])
    async with httpx2.AsyncClient(base_url=gateway.url) as http:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        allowed = await http.options("/v1/sessions", headers={"Origin": "https://app.example", **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        refused = await http.options("/v1/sessions", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in refused.headers
        simple = await http.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


@pytest.mark.ai_sdk
async def test_an_origin_with_any_port_is_allowed_and_a_refused_one_is_logged_with_the_setting(
    start_gateway: Callable[..., Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A useChat page on a Vite or Next dev server: its own origin, any port (tokentail dev's default).
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    for origins, origin, allowed in (
        (["http://localhost:*"], "http://localhost:5173", True),
        (["http://localhost:*"], "http://localhost.evil.example:5173", False),
        ([], "http://localhost:5173", False),  # none configured: refused, and said why (it was a bare 405)
    ):
        gateway = await start_gateway(cors_origins=origins)
        caplog.clear()
        monkeypatch.setattr(cors, "_refused", RateLimitedLogger(logging.getLogger(cors.__name__), every_seconds=10))
        async with httpx2.AsyncClient(base_url=gateway.url) as http:
            answer = await http.options("/v1/ai-sdk/chat", headers={"Origin": origin, **preflight})
            simple = await http.get("/healthz", headers={"Origin": origin})
        assert (answer.status_code == 200) is allowed, answer.text
        assert (answer.headers.get("access-control-allow-origin") == origin) is allowed
        assert ("access-control-allow-origin" in simple.headers) is allowed
        logged = [r.getMessage() for r in caplog.records if r.name == "tokentail.gateway.cors"]
        if allowed:
            assert logged == []
        else:
            assert logged and all(origin in line and "TOKENTAIL_CORS_ORIGINS" in line for line in logged), logged


async def test_a_request_head_past_the_bound_is_refused_with_431(start_gateway: Callable[..., Any]) -> None:
    gateway = await start_gateway(max_header_bytes=4096)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)

    async def send_endless_header() -> None:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):  # 8 MB, never terminated, unless the gateway cuts it off
                writer.write(b"a" * 8192)
                await writer.drain()

    sending = asyncio.create_task(send_endless_header())
    answer = await asyncio.wait_for(reader.read(), scaled(10))  # until the gateway closes the connection
    await sending
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and json.loads(body)["error"]["type"] == "headers_too_large"
    async with httpx2.AsyncClient(base_url=gateway.url) as http:  # a head within the bound is served
        assert (await http.get("/healthz", headers={"X-Fine": "a" * 3000})).status_code == 200


class RawConnection:
    """One keep-alive HTTP/1.1 connection, written in pieces of `piece` bytes (0: each request at
    once), so that a test says how a body reaches the gateway: in one read, or in many."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, piece: int) -> None:
        self.reader, self.writer, self.piece = reader, writer, piece

    async def send(self, request: bytes) -> None:
        if not self.piece:
            self.writer.write(request)
            await self.writer.drain()
            return
        for start in range(0, len(request), self.piece):
            self.writer.write(request[start : start + self.piece])
            await self.writer.drain()
            await asyncio.sleep(0)  # each piece its own read, as on a slow network

    async def response(self) -> tuple[int, bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), scaled(10))
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
        return int(head.split()[1]), await self.reader.readexactly(length)


@contextlib.asynccontextmanager
async def raw_connection(port: int, piece: int = 0) -> AsyncIterator[RawConnection]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        yield RawConnection(reader, writer, piece)
    finally:
        writer.close()


def post(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("piece", [0, 1400], ids=["in-one-write", "in-many-reads"])
@pytest.mark.parametrize(
    ("characters", "status"),
    [(65_000, 201), (70_000, 201), (100_000, 201), (100_001, 413), (500_000, 413), (1_048_000, 413)],
)
async def test_a_body_past_the_head_bound_is_read_as_a_body_and_the_connection_serves_the_next_request(
    start_gateway: Callable[..., Any], piece: int, characters: int, status: int
) -> None:
    # The body of a request that ends within a read is not the next request's head (it was: 431).
    gateway = await start_gateway()
    body = json.dumps({"input": "x" * characters, "params": {"tokens": 1}}).encode()
    async with raw_connection(gateway.port, piece) as connection:
        await connection.send(post("/v1/sessions", body))
        answered, text = await connection.response()
        assert answered == status, text[:300]
        await connection.send(HEALTHZ)
        assert (await connection.response())[0] == 200
        await connection.send(post("/v1/sessions", body) + HEALTHZ)  # pipelined: both in the same reads
        assert (await connection.response())[0] == status
        assert (await connection.response())[0] == 200


@pytest.mark.parametrize("piece", [0, 1400], ids=["in-one-write", "in-many-reads"])
async def test_a_413_for_a_declared_body_leaves_the_connection_serving(
    start_gateway: Callable[..., Any], piece: int
) -> None:
    gateway = await start_gateway(max_request_bytes=100_000)
    async with raw_connection(gateway.port, piece) as connection:
        await connection.send(post("/v1/sessions", b" " * 200_000))  # refused from its Content-Length, then sent
        answered, text = await connection.response()
        assert answered == 413 and json.loads(text)["error"]["type"] == "input_too_large"
        await connection.send(HEALTHZ)
        assert (await connection.response())[0] == 200


async def test_a_client_that_stops_reading_is_dropped_and_frees_its_stream(
    start_gateway: Callable[..., Any], store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    gateway = await start_gateway(stalled_client_seconds=1)
    async with httpx2.AsyncClient(base_url=gateway.url) as http:
        created = (await http.post("/v1/sessions", json={"input": "long"})).json()  # no worker: written here
    session_id, run_id = created["session_id"], created["run_id"]
    await runs.start_run(session_id, run_id, run_id, token="lease")
    delta = MessageDelta(run_id=run_id, text="x" * 16_000).model_dump_json()
    for _ in range(20):  # 10 MB: more than the sockets' buffers hold
        await (await held(runs, session_id, run_id, "lease")).append([("message.delta", delta)] * 32)
    slots = store.keys.tenant_streams(PUBLIC_TENANT)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gateway.port))
    _, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET /v1/sessions/{session_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # then never reads
    try:
        await _slot_taken_then_freed(redis, slots)
        assert sock.recv(65536, socket.MSG_PEEK)  # it did get the beginning of its stream
    finally:
        writer.close()


async def _slot_taken_then_freed(redis: Redis, slots: str) -> None:
    """Wait until a stream takes its tenant slot, then until the gateway gives up on its client."""

    async def taken() -> bool:
        return int(await redis.zcard(slots)) > 0

    async def freed() -> bool:
        return int(await redis.zcard(slots)) == 0

    await eventually(taken)
    await eventually(freed, interval=0.05)


async def test_a_websocket_client_that_stops_reading_is_closed_and_frees_its_stream(
    start_gateway: Callable[..., Any], redis: Redis, store: SessionStore
) -> None:
    gateway = await start_gateway(stalled_client_seconds=1)
    async with httpx2.AsyncClient(base_url=gateway.url) as http:
        created = (await http.post("/v1/sessions", json={"input": "hi"})).json()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    handshake = (
        f"GET /v1/sessions/{created['session_id']}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    writer.write(handshake.encode())  # then silence: no pong, ever
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    slots = store.keys.tenant_streams(PUBLIC_TENANT)
    try:
        await _slot_taken_then_freed(redis, slots)
    finally:
        writer.close()


@pytest.mark.ai_sdk
@pytest.mark.ag_ui
@pytest.mark.parametrize("route", ["ai-sdk", "ag-ui"])
async def test_a_chat_message_refused_at_the_stream_limit_queued_no_run(
    route: str, start_gateway: Callable[..., Any], redis: Redis, settings: Settings
) -> None:
    """The stream's slot is taken before the run is queued: a 429 means nothing started (a client
    that sends again must not leave a run behind per try)."""
    gateway = await start_gateway(max_streams_per_tenant=1)  # no worker: runs stay queued
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as http:
        holder = (await http.post("/v1/sessions", json={"input": "hold"})).json()
        async with http.stream("GET", holder["events_url"]) as held:  # the tenant's one stream
            assert held.status_code == 200
            url, body = {
                "ai-sdk": ("/v1/ai-sdk/chat", chat_body("chat-limit")),
                "ag-ui": ("/v1/ag-ui", agent_input("chat-limit")),
            }[route]
            refused = await http.post(url, json=body)
            assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_streams"
    sessions = [key async for key in redis.scan_iter(f"{settings.key_prefix}:*:meta")]
    assert len(sessions) == 1  # the holder's: the chat's session was never made, no run queued
