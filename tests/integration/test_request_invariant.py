"""No request is both carried out and refused: a write is answered 2xx and its effect (a session, a
run, an answer to a question) is recorded exactly once, or it is answered with an error and nothing
is recorded. A client may retry what it was refused, so a refusal after the fact does the write twice:
bodies of 64 KiB to 1 MiB were answered 431 `headers_too_large` after the gateway had created the
session, queued the run or recorded the answer (the read that ended the body was counted as the next
request's head). Each write here goes over a raw keep-alive connection to a real uvicorn gateway, in
one write, in many small ones, or ending in one large one, with a second request pipelined behind
it, which must be answered too. tests/deploy/test_nginx_bodies.py checks the same behind deploy/nginx.conf."""

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis

from tests.fixtures.stack import Gateway
from tests.integration.test_limits import HEALTHZ, post, raw_connection
from tests.support.sessions import waiting_for_input
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore

KIB = 1024
MIB = 1024 * KIB
MAX_REQUEST_BYTES = MIB  # TOKENTAIL_MAX_REQUEST_BYTES's default, which these gateways run with
# Around the head bound (TOKENTAIL_MAX_HEADER_BYTES, 64 KiB) and the body bound (1 MiB).
SIZES = {
    "1KiB": KIB,
    "64KiB": 64 * KIB,
    "64KiB+1": 64 * KIB + 1,
    "100KiB": 100 * KIB,
    "512KiB": 512 * KIB,
    "1MiB-1KiB": MIB - KIB,
    "1MiB": MIB,
    "1MiB+1": MIB + 1,
}
# How the request and the one pipelined behind it reach the gateway: all in one write; in writes of 1400
# bytes (a read each, as on a slow network); or all but the last 192 KiB, then those in one write, so
# that the read which ends a body of any size is larger than the head bound.
SENDINGS = ["in-one-write", "in-many-writes", "its-end-in-one-write"]
LAST_WRITE = 192 * KIB  # under asyncio's 256 KiB per read
# A refused write carried out anyway shows within milliseconds (the gateway's handler runs beside the
# refusal): this is how long a refusal's "nothing recorded" is watched for.
GRACE_SECONDS = 1.0
AGENTS = {"approve": "tests.agents.asking_agent:approval"}

Count = Callable[[], Awaitable[int]]
Answer = tuple[int, bytes]  # status, body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def padded_json(value: dict[str, Any], size: int) -> bytes:
    """`value` as a JSON object of exactly `size` bytes: spaces before its closing brace, which JSON allows."""
    text = json.dumps(value).encode()
    assert len(text) <= size, f"{len(text)} bytes of JSON do not fit in {size}"
    return text[:-1] + b" " * (size - len(text)) + b"}"


def text_for(size: int) -> str:
    """An input for a body of `size` bytes: a quarter of it, within TOKENTAIL_MAX_INPUT_CHARS (100,000)."""
    return "x" * min(size // 4, 50_000)


def session_body(size: int, marker: str) -> bytes:
    """A session with a first run, `size` bytes, padded in its metadata (which any size may use), which
    also carries `marker` to find it by."""

    def body(pad: str) -> bytes:
        metadata = {"marker": marker, "pad": pad}
        return json.dumps({"input": text_for(size), "params": {"tokens": 1}, "metadata": metadata}).encode()

    padded = body("p" * (size - len(body(""))))
    assert len(padded) == size
    return padded


def run_body(size: int) -> bytes:
    """A follow-up run (`CreateRun` takes no metadata: padded with whitespace)."""
    return padded_json({"input": text_for(size), "params": {"tokens": 1}}, size)


def answer_body(size: int, input_id: str) -> bytes:
    return padded_json({"input_id": input_id, "answer": {"approved": True}}, size)


async def sessions_marked(redis: Redis, prefix: str, marker: str) -> int:
    """How many sessions under key `prefix` carry `marker` in their metadata."""
    found = 0
    async for key in redis.scan_iter(match=f"{prefix}:*:meta", count=1000):
        metadata = await redis.hget(key, "metadata")  # type: ignore[misc]
        if metadata and json.loads(metadata).get("marker") == marker:
            found += 1
    return found


async def runs_of(http: httpx2.AsyncClient, session_id: str) -> int:
    """How many runs the session has recorded, as its REST state says."""
    state = await http.get(f"/v1/sessions/{session_id}")
    assert state.status_code == 200, state.text
    return len(state.json()["runs"])


async def assert_done_once_or_not_at_all(what: str, answer: Answer, recorded: Count) -> None:
    """The invariant: 2xx and recorded exactly once, or an error and never recorded."""
    status, text = answer
    if 200 <= status < 300:
        count = await recorded()  # a 2xx comes after the write, never before it
        assert count == 1, f"{what}: answered {status}, recorded {count} times"
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GRACE_SECONDS
    while True:
        count = await recorded()
        assert count == 0, f"{what}: answered {status} {text[:300]!r}, but recorded {count} times: a retry repeats it"
        if loop.time() >= deadline:
            return
        await asyncio.sleep(0.05)


async def exchange(port: int, sending: str, request: bytes, follow_up: bytes) -> tuple[Answer, Answer | None]:
    """Send `request` with `follow_up` pipelined behind it on one keep-alive connection, as `sending`
    says; their answers (None for a follow-up the gateway never answered: it closed the connection)."""
    data = request + follow_up
    async with raw_connection(port, 1400 if sending == "in-many-writes" else 0) as connection:
        with contextlib.suppress(ConnectionError):  # a gateway that refused may stop reading: see its answer
            if sending == "its-end-in-one-write" and len(data) > LAST_WRITE:
                await connection.send(data[:-LAST_WRITE])
                await asyncio.sleep(0.05)  # read by the gateway before the end comes
                data = data[-LAST_WRITE:]
            await connection.send(data)
        first = await connection.response()
        try:
            second: Answer | None = await connection.response()
        except (asyncio.IncompleteReadError, ConnectionError):
            second = None
    return first, second


@dataclass
class Write:
    request: bytes
    follow_up: bytes
    accepted: int  # the status of the write carried out
    recorded: Count


def create_session(redis: Redis, key_prefix: str, size: int) -> Write:
    """POST /v1/sessions, with a first run; recorded: the sessions with its marker, in Redis."""
    marker = uuid.uuid4().hex

    async def recorded() -> int:
        return await sessions_marked(redis, key_prefix, marker)

    return Write(post("/v1/sessions", session_body(size, marker)), HEALTHZ, 201, recorded)


async def queue_run(http: httpx2.AsyncClient, size: int) -> Write:
    """POST /v1/sessions/{sid}/runs in a new idle session; recorded: the session's runs."""
    created = await http.post("/v1/sessions", json={})  # idle: a run is queued at once, or refused
    assert created.status_code == 201, created.text
    session_id = created.json()["session_id"]
    assert await runs_of(http, session_id) == 0
    path = f"/v1/sessions/{session_id}"

    async def recorded() -> int:
        return await runs_of(http, session_id)

    return Write(post(f"{path}/runs", run_body(size)), get(path), 202, recorded)


async def answer_question(http: httpx2.AsyncClient, store: SessionStore, size: int) -> Write:
    """POST /v1/sessions/{sid}/runs/{rid}/input to the question of a run waiting for it (a worker runs the
    `approve` agent); recorded: the session's `input.received` events."""
    created = (await http.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()
    session_id, run_id = created["session_id"], created["run_id"]
    path = f"/v1/sessions/{session_id}"
    question = (await waiting_for_input(http, path))["pending_input"]

    async def recorded() -> int:
        events = await store.read(session_id, 0, 10_000)
        return sum(event.type == b"input.received" for event in events)

    assert await recorded() == 0
    request = post(f"{path}/runs/{run_id}/input", answer_body(size, question["input_id"]))
    return Write(request, get(path), 202, recorded)


@pytest.mark.parametrize("sending", SENDINGS)
@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("write", ["create-session", "queue-run", "answer-question"])
async def test_a_write_is_answered_2xx_and_done_once_or_refused_and_not_done(
    start_gateway: Callable[..., Any],
    start_worker: Callable[..., Any],
    redis: Redis,
    store: SessionStore,
    settings: Settings,
    write: str,
    size: int,
    sending: str,
) -> None:
    assert settings.max_request_bytes == MAX_REQUEST_BYTES and settings.max_header_bytes == 64 * KIB
    gateway: Gateway = await start_gateway(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as http:
        if write == "create-session":
            planned = create_session(redis, settings.key_prefix, size)
        elif write == "queue-run":
            planned = await queue_run(http, size)
        else:
            await start_worker(agents=AGENTS)
            planned = await answer_question(http, store, size)
        answer, follow_up = await exchange(gateway.port, sending, planned.request, planned.follow_up)
        what = f"{write} with a body of {size} bytes"
        await assert_done_once_or_not_at_all(what, answer, planned.recorded)
        assert follow_up is not None and follow_up[0] == 200, f"{what}: the pipelined request after it: {follow_up}"
        expected = planned.accepted if size <= MAX_REQUEST_BYTES else 413
        assert answer[0] == expected, f"{what}: {answer[1][:300]!r}"
