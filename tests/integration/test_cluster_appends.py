"""The per-token path (worker/writes/appends.py) with the sessions on a Redis Cluster: a tick's appends as
one call per slot, lean while their slot's count of the worker's calls vouches for them, the calls of
a primary in one write; a count found off on one slot, a refused lean append, a fenced run, a slot
moved or migrating under the writers, each at its worst instant."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
from redis.asyncio import Redis, RedisCluster

from tests.integration.test_appends import _count_round_trips, _say, _taken_over, _texts, _writer
from tests.servers.redis_cluster import migrating, move_slot
from tests.support.round_trips import log_writes
from tests.support.sessions import held, make_run, make_session
from tests.support.waiting import eventually
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_session_id
from tokentail.redis_server import LocalCluster
from tokentail.shared.connections.round_trips import ClusterRoundTrips, slot_of
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.errors import LeaseLost
from tokentail.worker.writes.appends import AppendTicks
from tokentail.worker.writes.writer import EventWriter


@pytest.fixture
def settings(cluster_settings: Settings) -> Settings:
    # A long lease: a process that heard nothing from Redis for a third of one checks its next appends
    # whole (test_appends.py says why these tests need the lean way kept through a loaded machine's stall).
    return cluster_settings.model_copy(update={"lease_ms": 60_000})


@pytest.fixture
async def runs(cluster_redis: RedisCluster, settings: Settings) -> AsyncIterator[AllWrites]:
    queue = Redis.from_url(str(settings.queue_redis_url))
    yield AllWrites(cluster_redis, settings, queue=queue)
    await queue.aclose()


@pytest.fixture
def store(cluster_redis: RedisCluster, settings: Settings) -> SessionStore:
    return SessionStore(cluster_redis, settings)


@pytest.fixture
def ticks(cluster_redis: RedisCluster, settings: Settings) -> AppendTicks:
    return AppendTicks(cluster_redis, settings)


def _slot(runs: AllWrites, session_id: str) -> int:
    return slot_of(runs.keys.session(session_id).events)


def _primary(redis: RedisCluster, slot: int) -> str:
    return redis.nodes_manager.get_node_from_slot(slot).name


def _session_id(runs: AllWrites, where: Callable[[int], bool]) -> str:
    """A new session's id whose slot is one `where` takes."""
    while not where(_slot(runs, session_id := new_session_id())):
        pass
    return session_id


async def _running(runs: AllWrites, ticks: AppendTicks, session_id: str | None = None) -> EventWriter:
    """The writer of a new run started under "lease-1" (in session `session_id`, if given)."""
    session, run = make_session(), make_run()
    if session_id is not None:
        session = session.model_copy(update={"session_id": session_id})
    await runs.queue_run(session.session_id, run, create=session)
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1")
    assert started is not None
    return _writer(ticks, await held(runs, session.session_id, run.run_id))


async def _trusted(ticks: AppendTicks, *writers: EventWriter) -> None:
    """Each writer past its first append (checked, which makes its run trusted by its slot's count)."""
    await asyncio.gather(*(_say(writer, "first") for writer in writers))
    await asyncio.sleep(2 * ticks.interval)  # a quiet spell: their next text goes at once, together


async def test_a_tick_s_appends_go_lean_one_call_per_slot_and_one_write_per_primary(
    runs: AllWrites,
    store: SessionStore,
    ticks: AppendTicks,
    cluster_redis: RedisCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writers = [await _running(runs, ticks) for _ in range(12)]
    twin = _session_id(runs, lambda slot: slot == writers[0].lease.slot)  # a session in the first one's slot
    writers.append(await _running(runs, ticks, twin))
    await _trusted(ticks, *writers)
    slots = {writer.lease.slot for writer in writers}
    primaries = {_primary(cluster_redis, slot) for slot in slots}
    sent = _count_round_trips(ticks, monkeypatch)
    written = log_writes(monkeypatch)
    for writer in writers:  # in one loop step, as at a tick
        await writer.delta("second")
    await asyncio.gather(*(writer.flush() for writer in writers))
    assert sent == [["lean"] * len(slots)]  # one round trip, a lean call per slot (the twins' in one)
    assert len(written) == len(primaries)  # the calls of each primary in one write
    assert sum(owed for _, owed in written) == len(slots)
    for writer in writers:
        assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "second"]


async def test_a_count_found_off_on_one_slot_sends_that_slot_s_appends_checked_and_no_other(
    runs: AllWrites,
    store: SessionStore,
    ticks: AppendTicks,
    cluster_redis: RedisCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Redis lost or took a call of the process's in one slot that the process did not hear of: that
    # slot's lean call writes nothing and its appends go checked; another slot's count still vouches.
    off = await _running(runs, ticks)
    twin = await _running(runs, ticks, _session_id(runs, lambda slot: slot == off.lease.slot))
    other = await _running(runs, ticks, _session_id(runs, lambda slot: slot != off.lease.slot))
    await _trusted(ticks, off, twin, other)
    await cluster_redis.incr(ticks._counter.count(off.lease.slot).key)
    sent = _count_round_trips(ticks, monkeypatch)
    for writer in (off, twin, other):
        await writer.delta("after")
    await asyncio.gather(*(writer.flush() for writer in (off, twin, other)))
    assert sent == [["lean", "lean"], ["checked"]]  # the two of the slot found off, checked in one call
    for writer in (off, twin, other):  # checked whole: trusted again
        await writer.delta(" on")
    await asyncio.gather(*(writer.flush() for writer in (off, twin, other)))
    assert sent[2:] == [["lean", "lean"]]
    for writer in (off, twin, other):
        assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "after", " on"]


async def test_a_refused_lean_append_goes_checked_and_a_fenced_run_fails_alone_in_its_primary_s_round_trip(
    runs: AllWrites,
    store: SessionStore,
    ticks: AppendTicks,
    cluster_redis: RedisCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two runs taken over just before the tick's call, each beside runs of other slots of its primary:
    # one trusted (its lean append is refused by the stream's fence, checked in the next round trip,
    # fenced), one new (its first append checked at once, fenced, in the same joined round trip).
    stale = await _running(runs, ticks)
    await cluster_redis.initialize()
    primary = _primary(cluster_redis, stale.lease.slot)
    same = lambda slot: slot != stale.lease.slot and _primary(cluster_redis, slot) == primary  # noqa: E731
    others = [await _running(runs, ticks, _session_id(runs, same)) for _ in range(3)]
    elsewhere = await _running(runs, ticks, _session_id(runs, lambda slot: _primary(cluster_redis, slot) != primary))
    await _trusted(ticks, stale, *others, elsewhere)
    new = await _running(runs, ticks, _session_id(runs, same))
    await _taken_over(runs, cast(Redis, cluster_redis), stale.lease)
    await _taken_over(runs, cast(Redis, cluster_redis), new.lease)
    sent = _count_round_trips(ticks, monkeypatch)
    for writer in (stale, *others, elsewhere, new):
        await writer.delta("late")
    await asyncio.gather(*(writer.flush() for writer in (*others, elsewhere)))
    for fenced in (stale, new):
        with pytest.raises(LeaseLost):
            await fenced.flush()
    assert sorted(sent[0]) == sorted(["lean"] * 5 + ["checked"])  # the new run's checked with the others
    assert sent[1:] == [["checked"]]  # the refused append alone, checked in the next round trip
    assert _texts(await store.read(stale.lease.session_id, 0, 10)) == ["first"]
    assert _texts(await store.read(new.lease.session_id, 0, 10)) == []
    for writer in (*others, elsewhere):
        assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "late"]


async def test_appends_follow_their_slot_to_another_primary_and_its_count_with_them(
    runs: AllWrites,
    store: SessionStore,
    ticks: AppendTicks,
    cluster_redis: RedisCluster,
    cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer = await _running(runs, ticks)
    await _trusted(ticks, writer)
    trips = cast(ClusterRoundTrips, ticks._round_trips)
    before = trips.trips(writer.lease.slot).name
    assert move_slot(cluster, writer.lease.slot) != before  # its stream and its slot's count move with it
    sent = _count_round_trips(ticks, monkeypatch)
    for text in ("moved", " on"):
        await _say(writer, text)
    assert sent == [["lean"], ["lean"]]  # MOVED, sent again to the new primary: still lean
    assert trips.trips(writer.lease.slot).name != before
    assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "moved", " on"]


async def test_an_append_whose_keys_a_migration_splits_waits_for_them_and_lands_once(
    runs: AllWrites,
    store: SessionStore,
    ticks: AppendTicks,
    cluster_redis: RedisCluster,
    cluster: LocalCluster,
) -> None:
    # The worst instant of a reshard: the slot's count of the worker's calls moved already, the run's
    # stream not yet. Its lean call is answered TRYAGAIN (then, past the retries, a ClusterError the
    # writer rides out through its lease): it lands once, when the migration ends.
    writer = await _running(runs, ticks)
    await _trusted(ticks, writer)
    with migrating(cluster, writer.lease.slot) as migration:
        migration.migrate(ticks._counter.count(writer.lease.slot).key)
        saying = asyncio.ensure_future(_say(writer, "split"))
        await asyncio.sleep(0.3)
        assert not saying.done()
    await saying
    await _say(writer, " and on")
    await eventually(lambda: writer.lease.journal.written == 5)
    assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "split", " and on"]
