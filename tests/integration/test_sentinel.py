"""The job queue on a Sentinel setup (real redis-server primary and replica, three redis-sentinel):
its primary killed while runs are queued and running, a replica promoted; no run lost, none run
twice, new runs start after the failover. The sessions are on a Redis of their own, as documented
(docs/deployment.md: Sentinel for the queue, a Redis or a Redis Cluster for the sessions)."""

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.redis_sentinel import LocalSentinels
from tests.sse_client import read_events
from tokentail.shared.redis_urls import SentinelSetup, sentinel_setup
from tokentail.worker.main import arq_redis_settings

SLOW = {"tokens": 30, "tokens_per_second": 20}  # 1.5 s a run


async def _queue_run(client: httpx2.AsyncClient, within: float = 30.0) -> dict[str, Any]:
    """A new session with a slow run, retried while the queue's Redis fails over (503)."""
    deadline = time.monotonic() + within
    while True:
        response = await client.post("/v1/sessions", json={"input": "hi", "params": SLOW})
        if response.status_code == 201 or time.monotonic() > deadline:
            assert response.status_code == 201, response.text
            created: dict[str, Any] = response.json()
            return created
        await asyncio.sleep(0.1)


async def _first_token(client: httpx2.AsyncClient, events_url: str) -> float:
    """The moment (monotonic) the first `message.delta` of a session reaches a client."""
    async with client.stream("GET", events_url) as response:
        async for line in response.aiter_lines():
            if line == "event: message.delta":
                return time.monotonic()
    raise AssertionError("the stream ended with no token")


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[LocalSentinels]:
    """Requested before the stack's fixtures, so that it outlives the gateway and the worker."""
    with LocalSentinels(tmp_path) as setup:
        yield setup


async def test_the_queue_s_primary_killed_with_runs_queued_and_running_loses_none_and_runs_none_twice(
    sentinels: LocalSentinels, start_gateway: Any, start_worker: Any
) -> None:
    gateway = await start_gateway(queue_redis_url=sentinels.url)
    await start_worker(queue_redis_url=sentinels.url, worker_concurrency=2)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        before = [await _queue_run(client) for _ in range(6)]  # 2 running, 4 waiting in the queue
        killed_at = time.monotonic()
        old_primary = await asyncio.to_thread(sentinels.kill_primary)
        await asyncio.to_thread(sentinels.wait_for, lambda: sentinels.primary_port() not in (None, old_primary))
        promoted_in = time.monotonic() - killed_at
        after = [await _queue_run(client) for _ in range(2)]
        first_token_at = await _first_token(client, after[0]["events_url"])
        sessions = before + after
        finished = await _finished(client, sessions, within=60)
        streams = [await read_events(client, created["events_url"]) for created in finished]
    starts = [Counter(data.get("reason", "start") for data in stream.of("run.started")) for stream in streams]
    lost = len(sessions) - sum(len(stream.of("run.completed")) for stream in streams)
    twice = sum(1 for count in starts if count["start"] > 1 or count["takeover"] > 0)
    print(  # noqa: T201
        f"\nSentinel failover: replica promoted {promoted_in:.2f} s after the primary's kill; first token of a"
        f" run queued after it {first_token_at - killed_at:.2f} s after the kill; of {len(sessions)} runs,"
        f" lost {lost}, run twice {twice}"
    )
    assert lost == 0 and twice == 0


async def _finished(client: httpx2.AsyncClient, sessions: list[dict[str, Any]], within: float) -> list[dict[str, Any]]:
    """The sessions whose run completed, once all did or `within` seconds passed."""
    deadline, done = time.monotonic() + within, []
    while time.monotonic() < deadline:
        states = [(await client.get(f"/v1/sessions/{created['session_id']}")).json() for created in sessions]
        done = [created for created, state in zip(sessions, states, strict=True) if _completed(state)]
        if len(done) == len(sessions):
            break
        await asyncio.sleep(0.2)
    return done


def test_sentinel_urls_name_their_sentinels_service_db_and_credentials() -> None:
    assert sentinel_setup("redis://h:6379/0") is None
    assert sentinel_setup("redis+sentinel://:secret@s1:26380,[::1]:26381,s3/queue/2") == SentinelSetup(
        sentinels=(("s1", 26380), ("::1", 26381), ("s3", 26379)), service="queue", db=2, password="secret"
    )
    assert sentinel_setup("redis+sentinel://u:p%40ss@s1/m") == SentinelSetup((("s1", 26379),), "m", 0, "u", "p@ss")
    for bad in (
        "redis+sentinel://s1:26379",
        "redis+sentinel://s1:x/m",
        "redis+sentinel://s1/m/zero",
        "redis+sentinel:///m",
    ):
        with pytest.raises(ValueError):
            sentinel_setup(bad)
    arq = arq_redis_settings("redis+sentinel://s1:26380,s2:26381/queue/1")
    assert (arq.sentinel, arq.host, arq.sentinel_master, arq.database) == (
        True,
        [("s1", 26380), ("s2", 26381)],
        "queue",
        1,
    )


def _completed(state: dict[str, Any]) -> bool:
    return state["status"] == "idle" and bool(state["runs"]) and state["runs"][-1]["status"] == "completed"
