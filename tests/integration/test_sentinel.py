"""The job queue on a Sentinel setup (real redis-server primary and replica, three redis-sentinel):
its primary killed while runs are queued and running, a replica promoted; no run lost, none run
twice, new runs start after the failover. First with the sessions on a Redis of their own, as
documented (docs/deployment.md: Sentinel for the queue, a Redis or a Redis Cluster for the sessions),
then with the sessions on the Sentinel setup too, followed live through the failover."""

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from tests.clients.sse_client import Received, read_events
from tests.servers.redis_faults import rolled_back_after
from tests.servers.redis_sentinel import LocalSentinels
from tests.support.gates import Gates
from tests.support.sessions import completion, delta_of, start_a_run
from tests.support.waiting import eventually
from tests.support.writes import AllWrites
from tokentail.client import AsyncTokentail
from tokentail.shared.connections.redis_clients import close_sentinels, redis_client
from tokentail.shared.plumbing.redis_urls import SentinelSetup, sentinel_setup
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.errors import LeaseLost
from tokentail.worker.process.main import arq_redis_settings
from tokentail.worker.writes.run_writes import RunLease

AGENTS = {"held": "tests.support.gates:held"}  # streams a little, then waits at its gate (tests/support/gates.py)


async def _queue_run(client: httpx2.AsyncClient, within: float = 30.0) -> dict[str, Any]:
    """A new session whose run waits at its gate, retried while the queue's Redis fails over (503)."""
    deadline = time.monotonic() + within
    while True:
        response = await client.post("/v1/sessions", json={"input": "hi", "agent": "held"})
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
    sentinels: LocalSentinels, start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    gateway = await start_gateway(queue_redis_url=sentinels.url, agents=AGENTS)
    await start_worker(queue_redis_url=sentinels.url, worker_concurrency=2, agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        before = [await _queue_run(client) for _ in range(6)]
        waiting = await _waiting_once_two_run(client, gates, before)
        killed_at = time.monotonic()
        old_primary = await asyncio.to_thread(sentinels.kill_primary)
        gates.release_all()  # the two running end, and the runs queued then and after go through
        # The first of the runs waiting in the queue to start: the queue works again.
        first_from_queue = asyncio.ensure_future(
            _first_of([_first_token(client, created["events_url"]) for created in waiting])
        )
        await asyncio.to_thread(sentinels.wait_for, lambda: sentinels.primary_port() not in (None, old_primary))
        promoted_in = time.monotonic() - killed_at
        after = [await _queue_run(client) for _ in range(2)]
        first_token_at = await _first_token(client, after[0]["events_url"])  # behind the 4 queued before it
        first_from_queue_at = await first_from_queue
        sessions = before + after
        finished = await _finished(client, sessions, within=60)
        streams = [await read_events(client, created["events_url"]) for created in finished]
    lost = len(sessions) - sum(len(stream.of("run.completed")) for stream in streams)
    twice = _run_twice(streams)
    print(  # noqa: T201
        f"\nSentinel failover: replica promoted {promoted_in:.2f} s after the primary's kill; first token of the"
        f" first run taken from the queue after it {first_from_queue_at - killed_at:.2f} s after the kill, of a"
        f" run queued after the promotion (behind 4) {first_token_at - killed_at:.2f} s; of {len(sessions)} runs,"
        f" lost {lost}, run twice {twice}"
    )
    assert lost == 0 and twice == 0


async def test_sessions_on_a_sentinel_setup_follow_the_promoted_primary_with_every_event_once(
    sentinels: LocalSentinels, start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    gateway = await start_gateway(redis_url=sentinels.url, agents=AGENTS)
    await start_worker(redis_url=sentinels.url, worker_concurrency=2, agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        before = [await _queue_run(client) for _ in range(4)]
        waiting = await _waiting_once_two_run(client, gates, before)  # 2 running (held), 2 waiting in the queue
        followed = next(created for created in before if created not in waiting)["session_id"]
        async with AsyncTokentail(gateway.url) as tokentail:
            stream = tokentail.stream(followed, catch_up="events")
            live = [await anext(stream)]  # run.queued
            while live[-1].event != "message.delta":
                live.append(await anext(stream))
            killed_at = time.monotonic()
            await asyncio.to_thread(sentinels.kill_primary)
            gates.release_all()  # the run followed goes on through the failover
            resumed_at = None
            async for event in stream:
                live.append(event)
                resumed_at = resumed_at or time.monotonic()
        after = [await _queue_run(client) for _ in range(2)]
        sessions = before + after
        finished = await _finished(client, sessions, within=60)
        streams = [await read_events(client, created["events_url"]) for created in finished]
    twice = _run_twice(streams)
    print(  # noqa: T201
        f"\nSessions on Sentinel: the follower's next event {(resumed_at or killed_at) - killed_at:.2f} s after the"
        f" primary's kill; of {len(sessions)} runs, lost {len(sessions) - len(finished)}, run twice {twice}"
    )
    assert len(finished) == len(sessions) and twice == 0
    assert all(count == 1 for stream in streams for count in Counter(stream.ids).values())
    assert [event.id for event in live] == list(range(1, len(live) + 1))  # every id once, in order
    text = "".join(event.data["text"] for event in live if event.event == "message.delta")
    [completed] = [event.data for event in live if event.event == "run.completed"]
    assert text == completed["output"]  # nothing the follower read was lost or replaced by the failover


async def test_a_replica_that_does_not_answer_slows_queueing_by_at_most_a_second_and_refuses_nothing(
    sentinels: LocalSentinels, start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    gateway = await start_gateway(redis_url=sentinels.url, agents=AGENTS)
    await start_worker(redis_url=sentinels.url, agents=AGENTS)
    gates.release_all()  # its run need not wait
    sentinels.replica.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
            started = time.monotonic()
            created = await _queue_run(client, within=0)
            queued_in = time.monotonic() - started
            stream = await read_events(client, created["events_url"])
    finally:
        sentinels.replica.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    print(f"\nQueued in {queued_in:.2f} s with the replica stopped")  # noqa: T201
    assert len(stream.of("run.completed")) == 1


async def test_writes_a_replica_must_have_are_still_fenced(sentinels: LocalSentinels, settings: Settings) -> None:
    """The writes that wait for a replica (a run's start and end, a question) go with WAIT in a
    pipeline: their FENCED and LOST answers still stop or recover the run as on one Redis."""
    redis = redis_client(sentinels.url, 4, wait=10)
    runs = AllWrites(redis, settings.model_copy(update={"redis_url": sentinels.url}))
    try:
        session_id, run = await start_a_run(runs)
        with pytest.raises(LeaseLost):
            await RunLease(runs, session_id, run.run_id, "not-the-lease").append([], ending=completion(run.run_id))
        lease = RunLease(runs, session_id, run.run_id, "lease-1")
        async with rolled_back_after(redis, settings, session_id):  # Redis loses the delta (3)
            await lease.append([delta_of(run.run_id, "a")])
        assert await lease.append([], ending=completion(run.run_id, "a")) == 4  # 3 written again first
    finally:
        await close_sentinels(redis)
        await redis.aclose()


def _run_twice(streams: list[Received]) -> int:
    """How many of the sessions' runs were started more than once (again, or taken over)."""
    starts = [Counter(data.get("reason", "start") for data in stream.of("run.started")) for stream in streams]
    return sum(1 for count in starts if count["start"] > 1 or count["takeover"] > 0)


async def _waiting_once_two_run(
    client: httpx2.AsyncClient, gates: Gates, sessions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Once the worker's 2 slots run 2 of the sessions (held at their gates), the others, whose runs
    wait in the queue."""

    async def two_held() -> list[dict[str, Any]]:
        states = [(await client.get(f"/v1/sessions/{created['session_id']}")).json() for created in sessions]
        waiting = [c for c, state in zip(sessions, states, strict=True) if state["runs"][-1]["status"] == "queued"]
        held = [created for created in sessions if gates.reached(created["run_id"])]
        assert len(held) == 2 and len(waiting) == len(sessions) - 2, states
        return waiting

    waiting: list[dict[str, Any]] = await eventually(two_held)
    return waiting


async def _first_of(moments: list[Coroutine[Any, Any, float]]) -> float:
    tasks = [asyncio.ensure_future(moment) for moment in moments]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return min(task.result() for task in done)


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


async def test_a_tenant_s_cap_is_counted_on_the_queue_s_sentinel_setup_and_holds_through_a_failover(
    sentinels: LocalSentinels, start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    options = {"queue_redis_url": sentinels.url, "agents": AGENTS, "max_active_runs_per_tenant": 1}
    gateway = await start_gateway(**options)
    await start_worker(worker_concurrency=4, **options)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        runs = [await _queue_run(client) for _ in range(3)]

        def started() -> list[str]:
            return [run["run_id"] for run in runs if gates.reached(run["run_id"])]

        await eventually(lambda: len(started()) == 1, what="the first run started, alone")
        # What the primary counted reaches the replica before the crash (replication is asynchronous).
        port = sentinels.primary_port()
        assert port is not None
        with redis.Redis(port=port) as primary:
            assert primary.wait(1, 5000) == 1
        old_primary = await asyncio.to_thread(sentinels.kill_primary)
        await asyncio.to_thread(sentinels.wait_for, lambda: sentinels.primary_port() not in (None, old_primary))
        # The promoted replica holds the first run's slot: the next starts only when that run ends, and
        # the third only when the second does.
        for count in (2, 3):
            gates.release(started()[-1])
            await eventually(partial(_started_count, started, count), within=60, what=f"run {count} started")
            assert len(started()) == count
        gates.release_all()
        finished = await _finished(client, runs, within=60)
    assert len(finished) == len(runs)


def _started_count(started: Callable[[], list[str]], count: int) -> bool:
    return len(started()) == count
