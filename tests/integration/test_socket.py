"""The WebSocket endpoint with a real WebSocket client against uvicorn."""

import asyncio
import json
import logging
from typing import Any

import httpx2
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.fixtures.stack import Gateway
from tests.support.waiting import scaled
from tokentail.gateway.access.ids import new_session_id
from tokentail.gateway.commands import turns
from tokentail.gateway.encodings import websocket as session_socket


def _ws_url(gateway: Gateway, session_id: str, query: str = "") -> str:
    return f"ws://127.0.0.1:{gateway.port}/v1/sessions/{session_id}/ws{query}"


async def _until(ws: ClientConnection, predicate: Any, within: float = 10) -> list[dict[str, Any]]:
    """Messages up to and including the first that satisfies `predicate`."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            seen.append(json.loads(await ws.recv()))
            if predicate(seen[-1]):
                return seen


def _is(event: str) -> Any:
    return lambda message: message.get("event") == event


async def test_the_same_events_as_sse_then_a_follow_up_and_a_cancel_over_the_socket(
    gateway: Gateway, client: httpx2.AsyncClient, start_worker: Any
) -> None:
    await start_worker()
    created = (await client.post("/v1/sessions", json={"input": "hi", "params": {"tokens": 30}})).json()
    async with websockets.connect(_ws_url(gateway, created["session_id"])) as ws:
        first = await _until(ws, _is("run.completed"))
        assert [m["id"] for m in first] == list(range(1, len(first) + 1))
        assert first[0] == {"id": 1, "event": "run.queued", "data": {"run_id": created["run_id"], "input": "hi"}}
        deltas = "".join(m["data"]["text"] for m in first if m["event"] == "message.delta")
        assert deltas == first[-1]["data"]["output"]
        # The socket stays open between runs: send the next turn over it, then stop it.
        long_run = {"type": "run", "input": "more", "params": {"tokens": 10000, "tokens_per_second": 100}}
        await ws.send(json.dumps(long_run))
        ack = await _until(ws, lambda m: m.get("type") == "ack")
        assert ack[-1]["request"] == "run"
        await _until(ws, _is("message.delta"))
        await ws.send(json.dumps({"type": "cancel"}))
        rest = await _until(ws, _is("run.cancelled"))
        assert {"type": "ack", "request": "cancel", "run_id": ack[-1]["run_id"], "status": "cancelling"} in rest
    sse = await client.get(created["events_url"])  # the SSE view of the same session agrees
    assert sse.text.count("event: run.cancelled") == 1


async def test_resume_from_a_last_event_id_in_the_query_or_a_message(
    gateway: Gateway, client: httpx2.AsyncClient, start_worker: Any
) -> None:
    await start_worker()
    created = (await client.post("/v1/sessions", json={"input": "hi", "params": {"tokens": 20}})).json()
    async with websockets.connect(_ws_url(gateway, created["session_id"])) as ws:
        everything = await _until(ws, _is("run.completed"))
    async with websockets.connect(_ws_url(gateway, created["session_id"], "?last_event_id=3")) as ws:
        assert await _until(ws, _is("run.completed")) == everything[3:]
        await ws.send(json.dumps({"type": "resume", "last_event_id": 1}))
        replay = await _until(ws, _is("run.completed"))
        assert replay[0] == {"type": "ack", "request": "resume", "last_event_id": 1}
        assert replay[1:] == everything[1:]


async def test_bad_messages_get_errors_and_keep_the_socket(gateway: Gateway, client: httpx2.AsyncClient) -> None:
    created = (await client.post("/v1/sessions", json={})).json()
    async with websockets.connect(_ws_url(gateway, created["session_id"])) as ws:
        await ws.send(json.dumps({"type": "dance"}))
        assert json.loads(await ws.recv())["error"]["type"] == "validation_error"
        await ws.send(json.dumps({"type": "run"}))  # no input
        assert json.loads(await ws.recv())["error"]["type"] == "validation_error"
        await ws.send("not json")
        assert json.loads(await ws.recv())["error"]["type"] == "validation_error"
        await ws.send(json.dumps({"type": "run", "input": "x" * 200_000}))
        assert json.loads(await ws.recv())["error"]["type"] == "input_too_large"
        await ws.send(json.dumps({"type": "run", "input": "first"}))  # no worker: it stays queued
        await _until(ws, lambda m: m.get("type") == "ack")
        await ws.send(json.dumps({"type": "run", "input": "second"}))
        refusal = await _until(ws, lambda m: m.get("type") == "error")
        assert refusal[-1]["error"]["type"] == "run_conflict"
        await ws.send(json.dumps({"type": "cancel"}))
        ack = await _until(ws, lambda m: m.get("type") == "ack")
        assert ack[-1]["request"] == "cancel" and ack[-1]["run_id"] is not None


@pytest.mark.parametrize(
    ("session", "query", "code"), [("unknown", "", 4404), ("malformed", "", 4404), ("known", "?last_event_id=x", 4400)]
)
async def test_refusals_close_with_a_clear_code(
    gateway: Gateway, client: httpx2.AsyncClient, session: str, query: str, code: int
) -> None:
    session_id = {"unknown": new_session_id(), "malformed": "nope"}.get(session)
    if session_id is None:
        session_id = (await client.post("/v1/sessions", json={})).json()["session_id"]
    async with websockets.connect(_ws_url(gateway, session_id, query)) as ws:
        error = json.loads(await ws.recv())
        assert error["type"] == "error"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_a_deleted_session_closes_its_sockets(gateway: Gateway, client: httpx2.AsyncClient) -> None:
    created = (await client.post("/v1/sessions", json={})).json()
    async with websockets.connect(_ws_url(gateway, created["session_id"])) as ws:
        await client.delete(f"/v1/sessions/{created['session_id']}")
        # The socket is accepted before it follows the session: deleted before that, it is refused
        # with an error frame first; deleted after, it is closed. Either way, with 4410.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), scaled(5)))
                assert (message["type"], message["error"]["type"]) == ("error", "session_expired"), message
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410


async def test_messages_have_the_rest_api_s_limits_and_bad_frames_keep_the_socket(
    start_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(max_request_bytes=4096)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        created = (await client.post("/v1/sessions", json={})).json()
    async with websockets.connect(_ws_url(gateway, created["session_id"])) as ws:
        big = json.dumps({"type": "run", "input": "hi", "params": {"blob": "x" * 5000}})
        deep = "[" * 2000 + "]" * 2000  # past Python's recursion limit, within the size limit
        frames: list[tuple[str | bytes, str]] = [
            (big, "input_too_large"),  # the REST body limit, not the socket's 4x bound
            (big.encode(), "validation_error"),  # binary
            (deep, "validation_error"),
            (json.dumps({"type": "run", "input": "hi", "metadata": _nested(40)}), "validation_error"),
            (json.dumps({"type": "run", "input": "hi", "params": {"temperature": float("nan")}}), "validation_error"),
        ]
        for frame, error in frames:
            await ws.send(frame)
            reply = json.loads(await asyncio.wait_for(ws.recv(), scaled(5)))
            assert (reply["type"], reply["error"]["type"]) == ("error", error), reply
        await ws.send(json.dumps({"type": "run", "input": "still here"}))
        assert (await _until(ws, lambda m: m.get("type") == "ack"))[-1]["request"] == "run"
        too_big = "x" * (4 * 4096 + 1)  # past the socket's own bound: closed, as the protocol says
        await ws.send(too_big)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                while True:  # the run's events may come first
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_the_ack_of_a_run_comes_before_the_run_s_events(
    gateway: Gateway, client: httpx2.AsyncClient, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's `run.queued` reaches the socket through the hub, as fast as Redis notifies, while
    # the ack waits for the script's reply: it lost that race in about 1 of 20 tries. At its worst
    # instant, the reply comes late.
    queue_follow_up = turns.queue_follow_up  # what the socket's handler calls, as it imported it

    async def late_reply(*args: Any) -> Any:
        run = await queue_follow_up(*args)
        await asyncio.sleep(0.05)
        return run

    monkeypatch.setattr(session_socket, "queue_follow_up", late_reply)
    await start_worker()
    created = (await client.post("/v1/sessions", json={"input": "hi", "params": {"tokens": 1}})).json()
    async with websockets.connect(_ws_url(gateway, created["session_id"])) as ws:
        await _until(ws, _is("run.completed"))
        for i in range(5):
            await ws.send(json.dumps({"type": "run", "input": f"turn {i}", "params": {"tokens": 1}}))
            messages = await _until(ws, _is("run.completed"))
            assert messages[0]["type"] == "ack" and messages[1]["event"] == "run.queued", messages[:2]
            assert messages[1]["data"]["run_id"] == messages[0]["run_id"]
