"""The time to first delta without traces: two gateways in this process (traces off here), two
clients of one run, one on each: the run is counted once, with no exemplar, and the session's meta
keeps which run was counted. In-process, both gateways observe the same histogram, so a run counted
twice would show. A response created over the Responses socket counts from its `response.create`;
one waited for without a stream is not counted."""

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from openai import AsyncOpenAI
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from tests.clients.sse_client import read_events
from tests.support.waiting import eventually
from tokentail.shared.plumbing import tracing
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.response_ids import parse_response_id


def counted() -> float:
    return REGISTRY.get_sample_value("tokentail_first_delta_seconds_count") or 0.0


async def test_a_run_read_on_two_gateways_is_counted_once_without_an_exemplar(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], settings: Settings, redis: Redis
) -> None:
    assert not tracing.ON
    first, second = await start_gateway(), await start_gateway()
    await start_worker()
    before = counted()
    async with httpx2.AsyncClient(timeout=30) as client:
        created = (await client.post(f"{first.url}/v1/sessions", json={"input": "hi", "params": {"tokens": 30}})).json()
        path = created["events_url"].removeprefix(first.url)
        for url in (first.url, second.url):
            assert (await read_events(client, url + path)).events[-1][1] == "run.completed"
        # Each gateway told Redis as it wrote the run's first delta: the second found it counted.
        hubs = [gateway.app.state.hub for gateway in (first, second)]
        await eventually(lambda: all(hub.first_deltas.idle for hub in hubs), what="both gateways' tries")
        meta = Keys(settings.key_prefix).session(created["session_id"]).meta
        counted_seq = await redis.hget(meta, "first_delta_seq")  # type: ignore[misc]
        assert counted_seq == b"1"  # the run's queued_seq: nothing is kept per run
        scraped = await client.get(f"{first.url}/metrics", headers={"Accept": "application/openmetrics-text"})
    assert counted() == before + 1
    assert not [line for line in scraped.text.splitlines() if line.startswith("tokentail_first_delta") and "#" in line]


@pytest.mark.responses
async def test_a_response_created_over_the_responses_socket_is_counted_from_its_create(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], store: SessionStore
) -> None:
    gateway = await start_gateway()
    await start_worker()
    before = counted()
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=20)
    async with client, client.responses.connect() as connection:
        await connection.send({"type": "response.create", "model": "scripted", "input": "hi", "params": {"tokens": 5}})  # type: ignore[arg-type]
        async for event in connection:
            if event.type == "response.completed":
                ids = parse_response_id(event.response.id)
                break
    hub = gateway.app.state.hub
    await eventually(lambda: hub.first_deltas.idle, what="the gateway's try")
    assert counted() == before + 1
    assert ids is not None
    run = await store.get_run(ids[0], ids[1])
    assert run is not None and run.received_at is not None and run.received_at <= run.queued_at  # type: ignore[operator]


@pytest.mark.responses
async def test_a_response_waited_for_without_a_stream_writes_no_first_delta(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> None:
    gateway = await start_gateway()
    await start_worker()
    before = counted()
    async with httpx2.AsyncClient(timeout=30) as client:
        body = {"model": "scripted", "input": "hi", "params": {"tokens": 5}}
        answered = await client.post(f"{gateway.url}/v1/responses", json=body)
    assert answered.status_code == 200 and answered.json()["status"] == "completed", answered.text
    hub = gateway.app.state.hub
    await eventually(lambda: hub.first_deltas.idle, what="no try left")
    assert counted() == before  # its client got the whole answer at its end, not a first delta
