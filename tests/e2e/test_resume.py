"""Resuming a live stream at many positions, through real gateway and worker processes."""

import asyncio
import random
import signal
from typing import Any

import httpx2
import pytest

from tests.clients.sse_client import Received, read_events
from tests.e2e.conftest import Stack
from tests.support.waiting import eventually, scaled


async def _follow_with_drops(client: httpx2.AsyncClient, url: str, seed: int) -> tuple[Received, int]:
    """Read the stream to its end, dropping the connection every few events at random and resuming."""
    rng = random.Random(seed)
    seen = Received(200, [])
    reconnects = 0
    while True:
        last = seen.ids[-1] if seen.ids else None
        part = await read_events(
            client, url, last_event_id=last, via=rng.choice(["header", "query"]), limit=rng.randint(1, 6)
        )
        if part.status == 204:
            return seen, reconnects
        assert part.status == 200
        seen.events.extend(part.events)
        reconnects += 1


def _assert_whole(received: Received) -> None:
    assert received.ids == list(range(1, len(received.ids) + 1)), "ids must be contiguous with no duplicate"
    final = received.events[-1]
    assert final[1] == "run.completed"
    assert "".join(d["text"] for d in received.of("message.delta")) == final[2]["output"]


@pytest.mark.parametrize("flush_ms", ["0", "50"])
async def test_clients_dropping_at_random_positions_see_every_event_once(stack: Stack, flush_ms: str) -> None:
    url = stack.gateway()
    stack.worker(TOKENTAIL_FLUSH_INTERVAL_MS=flush_ms)
    await asyncio.to_thread(stack.wait_for_workers, 1)  # a worker's start is no silence on the stream
    async with httpx2.AsyncClient(base_url=url, timeout=scaled(10)) as client:
        params: dict[str, Any] = {"tokens": 400, "tokens_per_second": 200}
        created = (await client.post("/v1/sessions", json={"input": "resume me", "params": params})).json()
        results = await asyncio.gather(*(_follow_with_drops(client, created["events_url"], seed) for seed in range(4)))
        for received, reconnects in results:
            _assert_whole(received)
            assert reconnects > 5
            assert received.events == results[0][0].events  # every client saw the same stream
        # After the end, resuming from every position gives exactly the rest.
        full = results[0][0]
        for position in range(len(full.events)):
            rest = await read_events(client, created["events_url"], last_event_id=position)
            assert rest.events == full.events[position:]
        assert (await read_events(client, created["events_url"], last_event_id=full.ids[-1])).status == 204


async def test_a_client_moves_between_gateway_replicas_mid_run(stack: Stack) -> None:
    urls = [stack.gateway(), stack.gateway()]
    stack.worker()
    clients = [httpx2.AsyncClient(base_url=url, timeout=10) for url in urls]
    try:
        params = {"tokens": 300, "tokens_per_second": 150}
        created = (await clients[0].post("/v1/sessions", json={"input": "hop", "params": params})).json()
        path = f"/v1/sessions/{created['session_id']}/events"
        seen = Received(200, [])
        hop = 0
        while True:
            part = await read_events(clients[hop % 2], path, last_event_id=seen.ids[-1] if seen.ids else None, limit=3)
            if part.status == 204:
                break
            seen.events.extend(part.events)
            hop += 1
        _assert_whole(seen)
        assert hop > 4
    finally:
        for client in clients:
            await client.aclose()


async def test_sigterm_on_a_gateway_ends_its_streams_cleanly_and_clients_resume_elsewhere(stack: Stack) -> None:
    stack.env["TOKENTAIL_AGENTS"] = '{"held": "tests.support.gates:held"}'  # waits at its gate (tests/support/gates.py)
    first, second = stack.gateway(), stack.gateway()
    stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    timeout = scaled(10)
    async with (
        httpx2.AsyncClient(base_url=first, timeout=timeout) as a,
        httpx2.AsyncClient(base_url=second, timeout=timeout) as b,
    ):
        body = {"input": "deploy", "agent": "held", "params": {"tokens": 300}}
        created = (await a.post("/v1/sessions", json=body)).json()
        path = f"/v1/sessions/{created['session_id']}/events"
        arrived: list[str] = []
        reader = asyncio.create_task(read_events(a, path, on_event=lambda event: arrived.append(event[1])))
        # The reader has its events (queued, started, a delta: then the run waits at its gate) before
        # the SIGTERM: on a busy machine it could still be connecting, and find the gateway stopping.
        await eventually(lambda: "message.delta" in arrived, within=60, interval=0.02)
        stack.gateways[first].send_signal(signal.SIGTERM)
        partial = await asyncio.wait_for(reader, scaled(10))  # ends without a transport error
        assert partial.events and partial.events[-1][1] != "run.completed"
        assert stack.gateways[first].wait(10) is not None
        assert (await b.get(f"/v1/sessions/{created['session_id']}")).json()["status"] == "running"
        stack.gates.release(created["run_id"])
        rest = await read_events(b, path, last_event_id=partial.ids[-1])
        _assert_whole(Received(200, partial.events + rest.events))
