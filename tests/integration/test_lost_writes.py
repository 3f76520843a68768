"""A run's events that Redis acknowledged and then lost (a failover to a replica a moment behind, a
restart without its last writes), on a real Redis: the session's keys are rolled back as such a
failover would, and the run's next write appends the lost events again under their ids first, on
the worker's ticks (worker/writes/appends.py, the lean script included) as on the plain path; events it
cannot append as they were stop the run instead. On one Redis, and on a Redis Cluster (the session's
primary failing over: its slot's count of the worker's calls found off)."""

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
import pytest
from redis.asyncio import Redis, RedisCluster

from tests.clients.sse_client import read_events
from tests.servers.redis_faults import rolled_back_after
from tests.support.sessions import completion, delta_of, held, start_a_run
from tests.support.writes import AllWrites
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.runs import Asked
from tokentail.shared.vocabulary.errors import LeaseLost
from tokentail.shared.vocabulary.records import Question
from tokentail.worker.writes.appends import AppendTicks
from tokentail.worker.writes.run_writes import RunLease
from tokentail.worker.writes.writer import EventWriter


def _texts(events: list[tuple[int, str, str]]) -> list[tuple[int, str]]:
    return [(seq, json.loads(data)["text"]) for seq, kind, data in events if kind == "message.delta"]


async def _stored(store: SessionStore, session_id: str) -> list[tuple[int, str, str]]:
    return [(event.seq, event.type.decode(), event.data.decode()) for event in await store.read(session_id, 0, 100)]


class _Appends:
    """A run's appends of one text each: on the plain path (`RunLease.append`), or on the worker's ticks
    (worker/writes/appends.py), one writer per lease, as a worker's run makes them."""

    def __init__(self, ticks: AppendTicks | None) -> None:
        self._ticks = ticks
        self._writers: dict[int, EventWriter] = {}

    async def __call__(self, lease: RunLease, text: str) -> int:
        if self._ticks is None:
            return await lease.append([delta_of(lease.run_id, text)])
        writer = self._writers.get(id(lease))
        if writer is None:
            writer = self._writers[id(lease)] = EventWriter(lease, self._ticks, max_output_chars=1_000_000)
        await writer.delta(text)
        await writer.flush()
        return lease.journal.written


@pytest.fixture(params=["one", "cluster"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Each test on one Redis, and with its sessions on a Redis Cluster (its queue apart): there a
    failover loses what the session's primary was sent last."""
    cluster_settings: Settings = request.getfixturevalue("cluster_settings") if request.param == "cluster" else settings
    return cluster_settings


@pytest.fixture
async def redis(redis: Redis, settings: Settings) -> AsyncIterator[Redis]:
    if not settings.redis_cluster:
        yield redis
        return
    cluster = RedisCluster.from_url(str(settings.redis_url))
    yield cast(Redis, cluster)  # (the tests call what both clients have)
    await cluster.aclose()


@pytest.fixture
async def lifecycle(redis: Redis, settings: Settings) -> AsyncIterator[AllWrites]:
    queue = Redis.from_url(settings.queue_redis_url) if settings.queue_redis_url else None
    yield AllWrites(redis, settings, queue=queue)
    if queue is not None:
        await queue.aclose()


@pytest.fixture(params=["plain", "ticks"])
def append(request: pytest.FixtureRequest, redis: Redis, settings: Settings) -> _Appends:
    return _Appends(AppendTicks(redis, settings) if request.param == "ticks" else None)


async def _append(lease: RunLease, text: str) -> int:
    return await lease.append([delta_of(lease.run_id, text)])


async def test_lost_events_are_appended_again_under_their_ids_before_the_next(
    redis: Redis,
    settings: Settings,
    store: SessionStore,
    lifecycle: AllWrites,
    append: _Appends,
) -> None:
    session_id, run = await start_a_run(lifecycle)  # run.queued 1, run.started 2
    lease = RunLease(lifecycle, session_id, run.run_id, "lease-1")
    assert await _append(lease, "a") == 3
    async with rolled_back_after(redis, settings, session_id):
        assert await _append(lease, "b") == 4
        assert await _append(lease, "c") == 5
    before = await _stored(store, session_id)
    assert _texts(before) == [(3, "a")]  # Redis forgot b and c

    assert await append(lease, "d") == 6
    await lease.append([], ending=completion(run.run_id, "abcd"))
    events = await _stored(store, session_id)
    assert _texts(events) == [(3, "a"), (4, "b"), (5, "c"), (6, "d")]
    assert [seq for seq, _, _ in events] == list(range(1, 8))


async def test_a_run_idle_when_a_loss_was_noticed_is_checked_at_its_next_append(
    redis: Redis, settings: Settings, store: SessionStore, lifecycle: AllWrites, append: _Appends
) -> None:
    # On the ticks, the call that notices the count off (Redis lost writes) checks only its own runs:
    # another run's next append must be checked too, not trusted to the count (nor written the lean way,
    # past the hole).
    (one, first), (two, second) = [await start_a_run(lifecycle) for _ in range(2)]
    leases = [await held(lifecycle, one, first.run_id), await held(lifecycle, two, second.run_id)]
    for lease in leases:
        assert await append(lease, "a") == 3
    async with rolled_back_after(redis, settings, one):  # (every key: the other session's too)
        for lease in leases:
            assert await append(lease, "b") == 4
    assert await append(leases[0], "c") == 5  # notices the loss: b again, then c
    assert await append(leases[1], "c") == 5  # idle meanwhile: its b too
    for session_id in (one, two):
        assert _texts(await _stored(store, session_id)) == [(3, "a"), (4, "b"), (5, "c")]


async def test_a_question_asked_after_lost_events_comes_after_them(
    redis: Redis, settings: Settings, store: SessionStore, lifecycle: AllWrites
) -> None:
    session_id, run = await start_a_run(lifecycle)
    lease = RunLease(lifecycle, session_id, run.run_id, "lease-1")
    async with rolled_back_after(redis, settings, session_id):
        await _append(lease, "a")
    question = Question(input_id="q1", kind="text", prompt="Name?", answer_schema={"type": "string"})
    assert await lease.ask([question], [question]) is Asked.WAITING
    events = await _stored(store, session_id)
    assert [(seq, kind) for seq, kind, _ in events][2:] == [(3, "message.delta"), (4, "input.required")]


async def test_lost_events_it_cannot_append_as_they_were_stop_the_run(
    redis: Redis, settings: Settings, store: SessionStore, lifecycle: AllWrites
) -> None:
    session_id, run = await start_a_run(lifecycle)
    lease = RunLease(lifecycle, session_id, run.run_id, "lease-1")
    async with rolled_back_after(redis, settings, session_id):
        # An event this worker's journal does not hold (another holder of the same lease stands in
        # for one appended by someone else), then one it does.
        await RunLease(lifecycle, session_id, run.run_id, "lease-1").append([delta_of(run.run_id, "theirs")])
        await _append(lease, "ours")
    with pytest.raises(LeaseLost):
        await _append(lease, "next")
    assert [seq for seq, _, _ in await _stored(store, session_id)] == [1, 2]  # nothing written under lost ids


async def test_lost_events_it_cannot_append_again_are_never_given_out_again_with_other_content(
    redis: Redis, settings: Settings, store: SessionStore, lifecycle: AllWrites, start_gateway: Any
) -> None:
    # Regression: the run stopped, was taken over, and its next attempt appended from the first lost id:
    # a follower that had read the lost events was then given other events under the same ids.
    session_id, run = await start_a_run(lifecycle)
    lease = RunLease(lifecycle, session_id, run.run_id, "lease-1")
    await _append(lease, "a")  # 3
    async with rolled_back_after(redis, settings, session_id):
        await RunLease(lifecycle, session_id, run.run_id, "lease-1").append([delta_of(run.run_id, "theirs")])  # 4
        await _append(lease, "ours")  # 5
        followed = {seq: (kind, data) for seq, kind, data in await _stored(store, session_id)}  # a follower's view
    assert sorted(followed) == [1, 2, 3, 4, 5]
    with pytest.raises(LeaseLost):
        await _append(lease, "next")
    # The next attempt, as a worker that takes the run over starts it. (The run was handed over; a
    # worker that died instead would leave its lease to a reaper.)
    keys = Keys(settings.key_prefix).session(session_id)
    if await redis.exists(keys.lease):
        await redis.hset(keys.meta, "lease_until", "0")  # type: ignore[misc]
        await lifecycle.look(session_id)
    started = await lifecycle.start_run(session_id, run.run_id, "job-2", token="lease-2", takeover=3)
    assert started is not None
    again = RunLease(lifecycle, session_id, run.run_id, "lease-2")
    await again.append([delta_of(run.run_id, "b")])
    await again.append([], ending=completion(run.run_id, "ab"))
    final = {seq: (kind, data) for seq, kind, data in await _stored(store, session_id)}
    assert all(final.get(seq, seen) == seen for seq, seen in followed.items())  # no id with two contents
    assert sorted(final) == [1, 2, 3, 6, 7, 8]  # a hole where the lost events were
    assert final[6][0] == "run.continued" and json.loads(final[6][1])["from_event_id"] == 3
    gateway = await start_gateway()
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        behind = await read_events(client, f"/v1/sessions/{session_id}/events", last_event_id=3)
        assert behind.events[0][1] == "gap" and behind.events[0][2]["first_available"] == 6
        assert behind.ids == [6, 7, 8]
        ahead = await read_events(client, f"/v1/sessions/{session_id}/events", last_event_id=5)
        assert ahead.ids == [6, 7, 8] and ahead.events[0][1] == "run.continued"  # it drops "theirs" and "ours"
