"""Clients that come and go at the worst instants, with real processes: every stream they opened
ends, and gives back its tenant slot and its Redis connection."""

import asyncio
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import httpx2
import pytest
import websockets
from redis.asyncio import Redis

from tests.e2e.conftest import Stack
from tests.support.waiting import eventually, scaled
from tokentail.shared.store.keys import Keys

KEY = "leaky-tenant-key-0123456789"
CYCLES = 100
# Frames per flood: before the bound, 20,000 grew the gateway by about 450 MB a round; 3,000 would
# grow it by about 67 MB, 200 over the three rounds measured, far past the test's 30 MB. More frames
# queue the client's pongs behind them for longer than the gateway's 15 s keepalive on a loaded
# machine (CI saw it close the socket), and 6,000 outlasted the reader's wait at load 12.
FLOOD = 3_000


def _open_streams(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = r'^tokentail_connections\{transport="([\w-]+)"\} (\S+)'
    return {kind: float(n) for kind, n in re.findall(pattern, text, re.M)}


async def test_connect_resume_close_cycles_leave_no_stream_slot_or_connection_behind(stack: Stack) -> None:
    stack.env |= {"TOKENTAIL_API_KEYS": f"acme:{KEY}", "TOKENTAIL_SECRET": "s" * 40}
    url = stack.gateway()
    stack.worker()
    redis = Redis.from_url(stack.redis.url)
    slots = Keys(stack.env["TOKENTAIL_KEY_PREFIX"]).tenant_streams("acme")
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        finished = (await client.post("/v1/sessions", json={"input": "done", "params": {"tokens": 5}})).json()
        running = (await client.post("/v1/sessions", json={"input": "long", "params": {"tokens": 100_000}})).json()

        async def finished_idle() -> bool:
            return bool((await client.get(f"/v1/sessions/{finished['session_id']}")).json()["status"] == "idle")

        await eventually(finished_idle, within=60, interval=0.02)
        before = int((await redis.info("clients"))["connected_clients"])

        def ws_url(session: dict[str, str]) -> str:
            return f"ws{url[4:]}/v1/sessions/{session['session_id']}/ws?token={session['stream_token']}"

        for _ in range(CYCLES):  # read the first event, then leave while the feed tails the stream
            async with websockets.connect(ws_url(finished)) as ws:
                await ws.recv()
        for _ in range(CYCLES):  # ask to resume at once, then leave while the feed restarts
            async with websockets.connect(ws_url(running)) as ws:
                await ws.send(json.dumps({"type": "resume", "last_event_id": 0}))
        for _ in range(CYCLES):  # read the first bytes of an SSE stream, then leave
            async with client.stream("GET", running["events_url"]) as response:
                await anext(response.aiter_bytes())

        async def settled() -> tuple[dict[str, float], int, dict[str, Any]]:
            streams, held = _open_streams(url), int(await redis.zcard(slots))
            clients: dict[str, Any] = await redis.info("clients")
            assert (streams, held, int(clients["blocked_clients"])) == (dict.fromkeys(streams, 0), 0, 0)
            return streams, held, clients

        try:
            streams, held, clients = await eventually(settled, interval=0.1)
        finally:
            await redis.aclose()
    growth = int(clients["connected_clients"]) - before
    print(  # noqa: T201
        f"\nafter {3 * CYCLES} connect/close cycles: open streams {streams}, slots held {held}, "
        f"Redis clients blocked {clients['blocked_clients']}, connected +{growth} (idle pooled connections)"
    )
    assert growth <= 20  # the gateway's pools keep a few idle connections; a leak kept one per cycle (+95)


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]


@pytest.mark.ai_sdk
async def test_a_flood_of_chat_requests_on_one_socket_leaves_the_gateway_s_memory_where_it_was(stack: Stack) -> None:
    # 20,000 `resume` frames on one AI SDK chat socket took a gateway from 71 to 525 MB, kept after
    # close and growing each round: every request a feed, and a reused requestId left the one it
    # replaced running. Now a socket holds 16 in flight, and one that replaces another stops it.
    url = stack.gateway()
    stack.worker()
    pid = stack.gateways[url].pid
    socket_url = f"ws{url[4:]}/v1/ai-sdk/chat/ws"
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        made = await client.post("/v1/sessions", json={"chat_id": "flood", "input": "go", "params": {"tokens": 10**6}})
        assert made.status_code == 201

        async def flood() -> int:
            """Half the frames reuse one id, half are new: how many were refused, once the 16 taken
            (the last "same" and 15 new) each streamed a chunk."""
            refused, streaming = 0, set[str]()
            # Read while sending, as a browser does: a client that only sends stops taking the
            # gateway's answers, and then its pongs (the gateway closes it: keepalive ping timeout).
            async with websockets.connect(socket_url, max_size=None, max_queue=None) as socket:

                async def read() -> None:
                    nonlocal refused
                    while refused < FLOOD // 2 - 15 or len(streaming) < 16:
                        frame = json.loads(await socket.recv())
                        refused += frame["type"] == "error" and frame["errorText"].startswith("too_many_requests")
                        if frame["type"] == "chunk":
                            streaming.add(frame["requestId"])

                reading = asyncio.create_task(read())
                for i in range(FLOOD):
                    request_id = "same" if i < FLOOD // 2 else f"r{i}"
                    await socket.send(json.dumps({"type": "resume", "requestId": request_id, "id": "flood"}))
                    if i % 100 == 0:
                        await asyncio.sleep(0)  # a send into a socket with room does not yield: let the reader run
                await asyncio.wait_for(reading, scaled(60))
            await eventually(lambda: _open_streams(url).get("ai-sdk-ws") == 0, interval=0.1)
            return refused

        await flood()  # warms what a first flood allocates once (imports, buffers)
        before = _rss_mb(pid)
        rounds = [await flood() for _ in range(3)]
        after = _rss_mb(pid)
    figure = f"3 floods of {FLOOD} chat requests on a socket: {rounds} refused; gateway {before:.0f} -> {after:.0f} MB"
    print("\n" + figure)  # noqa: T201
    assert after - before < 30  # was +454 MB a round
