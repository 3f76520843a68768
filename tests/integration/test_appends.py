"""The per-token path (worker/writes/appends.py) against a real redis-server: many runs' appends a tick at a
time, one call and one round trip, each writer told its own reply; the lean script fenced by the
stream itself (a takeover, a hand-over, a delete: lib/seqs.lua), what it refuses checked whole."""

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.round_trips import break_round_trips, hold_replies, log_writes, lose_replies
from tests.support.sessions import delta_of, held, start_a_run
from tests.support.waiting import eventually, scaled
from tests.support.writes import AllWrites
from tokentail.shared.connections import outage
from tokentail.shared.connections.round_trips import round_trips
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.runs import AppendEvents, AppendKeys, AppendShared
from tokentail.shared.vocabulary.errors import LeaseLost
from tokentail.worker.writes.appends import JOINED_CALLS, AppendTicks
from tokentail.worker.writes.lease import LeaseKeeper
from tokentail.worker.writes.run_writes import RunLease
from tokentail.worker.writes.writer import EventWriter


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A process that heard nothing from Redis for a third of a lease checks its next appends whole
    # (AppendTicks._patience): with the fixtures' 3 s lease, a loaded machine's 1 s stall between two
    # appends made a test's lean call a checked one. The tests below mean the lean way.
    return settings.model_copy(update={"lease_ms": 60_000})


def _writer(ticks: AppendTicks, lease: RunLease) -> EventWriter:
    return EventWriter(lease, ticks, max_output_chars=1_000_000)


async def _say(writer: EventWriter, text: str) -> None:
    """One append of `text` on the tick path, landed."""
    await writer.delta(text)
    await writer.flush()


def _texts(events: Any) -> list[str]:
    return [json.loads(event.data)["text"] for event in events if event.type == b"message.delta"]


def _count_round_trips(ticks: AppendTicks, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The ticks' round trips from now on: each as the scripts it called, in order ("lean", "checked")."""
    sent: list[list[str]] = []
    submit = ticks._round_trips.submit
    names = {ticks._lean.sha: "lean", ticks._checked.sha: "checked"}
    names.update({ticks._lean.source: "lean", ticks._checked.source: "checked"})

    def counted(commands: Any, slots: Any = None) -> Any:
        sent.append([names.get(command[1], "other") for command in commands])
        return submit(commands, slots)

    monkeypatch.setattr(ticks._round_trips, "submit", counted)
    return sent


async def _writers(runs: AllWrites, ticks: AppendTicks, count: int) -> list[EventWriter]:
    """Writers of `count` new runs, each past its first append (checked, which makes its run trusted:
    its next appends go the lean way)."""
    writers = []
    for _ in range(count):
        session_id, run = await start_a_run(runs)
        writers.append(_writer(ticks, await held(runs, session_id, run.run_id)))
    await asyncio.gather(*(_say(writer, "first") for writer in writers))
    await asyncio.sleep(2 * ticks.interval)  # a quiet spell: their next text goes at once, together
    return writers


async def test_many_runs_share_round_trips_and_each_keeps_its_order(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = AppendTicks(redis, settings)
    writers = await _writers(runs, ticks, 20)
    sent = _count_round_trips(ticks, monkeypatch)

    async def write(writer: EventWriter) -> None:
        for i in range(10):  # one at a time per run, as a model's text comes
            await _say(writer, str(i))

    await asyncio.gather(*(write(writer) for writer in writers))
    assert len(sent) <= 10 * 2  # 200 appends in about as many round trips as one run's appends
    assert all(calls == ["lean"] for calls in sent)  # each round trip's appends in one call, the lean one
    for writer in writers:
        events = await store.read(writer.lease.session_id, 0, 100)
        assert _texts(events) == ["first", *(str(i) for i in range(10))]
        assert [event.seq for event in events] == list(range(1, len(events) + 1))


async def test_a_tick_s_appends_are_one_call_and_each_writer_is_told_its_own_reply(
    runs: AllWrites,
    store: SessionStore,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = AppendTicks(redis, settings)
    writers = await _writers(runs, ticks, 4)
    sent = _count_round_trips(ticks, monkeypatch)
    told: dict[int, int | BaseException] = {}
    for number, writer in enumerate(writers):
        landed = writer.landed

        def telling(reply: int | BaseException, number: int = number, landed: Any = landed) -> None:
            told[number] = reply
            landed(reply)
            if number == 2:
                raise RuntimeError("a bug in one writer")  # the writers after it are told all the same

        monkeypatch.setattr(writer, "landed", telling)
    for writer in writers:  # in one loop step, as at a tick
        await writer.delta("second")
    await eventually(lambda: len(told) == len(writers))
    assert sent == [["lean"]]  # one round trip, one script call
    assert list(told.values()) == [4] * 4  # each after its run.queued, run.started and first delta
    assert "its append's reply could not be handled" in caplog.text
    for writer in writers:
        assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "second"]


async def _taken_over(runs: AllWrites, redis: Redis, lease: RunLease) -> None:
    """A reaper takes the run over: its lease ran out (its worker stalled), so it is requeued."""
    await redis.hset(runs.keys.session(lease.session_id).meta, "lease_until", "0")  # type: ignore[misc]
    assert (await runs.look(lease.session_id)).outcome.value == "requeued"


async def test_a_stale_worker_s_append_in_a_joined_call_is_fenced_and_the_others_land(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The takeover lands just before the tick's call: the call's lean append of the stalled worker is
    # refused by the stream (its last id was moved past its top), checked, and found fenced.
    ticks = AppendTicks(redis, settings)
    stale, *others = await _writers(runs, ticks, 3)
    await _taken_over(runs, redis, stale.lease)
    sent = _count_round_trips(ticks, monkeypatch)
    for writer in (stale, *others):
        await writer.delta("late")
    await asyncio.gather(*(writer.flush() for writer in others))
    with pytest.raises(LeaseLost):
        await stale.flush()
    assert sent == [["lean"], ["checked"]]  # the refused append alone, checked in the next round trip
    assert _texts(await store.read(stale.lease.session_id, 0, 10)) == ["first"]
    for writer in others:
        assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "late"]


def _stale(ticks: AppendTicks, lease: RunLease) -> EventWriter:
    """A writer of the worker that held `lease`, stalled since its last append: it knows no later id."""
    again = RunLease(lease.runs, lease.session_id, lease.run_id, lease.token)
    again.journal.written = lease.journal.written
    return _writer(ticks, again)


async def test_a_stale_worker_is_fenced_before_and_after_the_new_owner_writes(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis
) -> None:
    ticks = AppendTicks(redis, settings)
    (stale,) = await _writers(runs, ticks, 1)
    lease = stale.lease
    await _taken_over(runs, redis, lease)
    with pytest.raises(LeaseLost):  # before the new owner's first event: the fence alone refuses it
        await _say(_stale(ticks, lease), "stale")
    started = await runs.start_run(lease.session_id, lease.run_id, "job-2", token="lease-2", takeover=3)
    assert started is not None
    entries = await redis.xrange(runs.keys.session(lease.session_id).events)
    assert [entry_id for entry_id, _ in entries][-1] == b"4-1"  # the first entry after the fence
    with pytest.raises(LeaseLost):  # and after it
        await _say(_stale(ticks, lease), "stale")
    owner = _writer(ticks, started.lease)
    await _say(owner, "on")
    await _say(owner, "and on")  # trusted now: the lean way, after the `-1` entry
    events = await store.read(lease.session_id, 0, 20)
    assert [event.seq for event in events] == [1, 2, 3, 4, 5, 6]
    assert [event.type for event in events][3] == b"run.continued"
    assert _texts(events) == ["first", "on", "and on"]
    assert [event.seq for event in await store.read(lease.session_id, 4, 20)] == [5, 6]  # after the `-1` entry


async def test_a_hand_over_fences_the_worker_that_handed_over(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis
) -> None:
    ticks = AppendTicks(redis, settings)
    (writer,) = await _writers(runs, ticks, 1)
    await writer.lease.hand_over()
    with pytest.raises(LeaseLost):
        await _say(writer, "after")
    assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first"]


async def test_a_session_deleted_under_a_writer_fences_it_and_stays_deleted(
    runs: AllWrites, settings: Settings, redis: Redis
) -> None:
    ticks = AppendTicks(redis, settings)
    (writer,) = await _writers(runs, ticks, 1)
    session_id = writer.lease.session_id
    await runs.delete_session(await SessionStore(redis, settings).get_session(session_id))
    with pytest.raises(LeaseLost):
        await _say(writer, "after")
    keys = runs.keys.session(session_id)
    assert not await redis.exists(keys.events, keys.meta)  # the lean XADD made no stream again (NOMKSTREAM)


async def test_appends_go_on_after_redis_lost_its_scripts(runs: AllWrites, settings: Settings, redis: Redis) -> None:
    ticks = AppendTicks(redis, settings)
    (writer,) = await _writers(runs, ticks, 1)
    await _say(writer, "lean")
    await redis.script_flush()  # as a restart that kept the data (AOF) would
    await _say(writer, "after")
    assert writer.lease.journal.written == 5


async def test_a_lost_reply_and_its_retry_give_one_event(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = AppendTicks(redis, settings)
    (writer,) = await _writers(runs, ticks, 1)
    lost = lose_replies(monkeypatch, ticks._round_trips)  # Redis runs the call, and its reply is lost
    await _say(writer, "once")  # sent again through the lease: found where its first try put it
    assert lost and writer.lease.journal.written == 4
    assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "once"]


async def test_a_broken_round_trip_fails_every_append_in_it_and_each_rides_it_out(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = AppendTicks(redis, settings)
    writers = await _writers(runs, ticks, 3)
    broken = asyncio.Event()
    with monkeypatch.context() as patched:
        break_round_trips(patched, round_trips(redis), broken)
        patched.setattr(outage, "OUTAGE_SECONDS", scaled(30))
        flushing = asyncio.gather(*(_say(writer, "through") for writer in writers))
        await broken.wait()
    await flushing  # Redis answers again: each append goes on through its lease's ride-out
    for writer in writers:
        assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "through"]


async def test_more_appends_than_one_script_call_takes_go_as_several_in_one_round_trip(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = AppendTicks(redis, settings)
    writers = await _writers(runs, ticks, JOINED_CALLS + 6)
    sent = _count_round_trips(ticks, monkeypatch)
    for writer in writers:  # in one loop step
        await writer.delta("x")
    await asyncio.gather(*(writer.flush() for writer in writers))
    assert sent == [["lean", "lean"]]  # one round trip, two script calls, in order
    assert {writer.lease.journal.written for writer in writers} == {4}


@contextmanager
def _counting(loop: asyncio.AbstractEventLoop) -> Iterator[list[int]]:
    """The futures and tasks tokentail's code makes on `loop` meanwhile (not the test's own sleeps and
    waits): [futures, tasks]."""
    made = [0, 0]
    create_future, create_task = loop.create_future, loop.create_task

    def ours() -> bool:
        frame = sys._getframe(2)
        while frame is not None and "asyncio" in frame.f_code.co_filename:
            frame = frame.f_back  # type: ignore[assignment]
        return frame is not None and "/tests/" not in frame.f_code.co_filename

    def future() -> Any:
        made[0] += ours()
        return create_future()

    def task(*args: Any, **kwargs: Any) -> Any:
        made[1] += ours()
        return create_task(*args, **kwargs)

    loop.create_future, loop.create_task = future, task  # type: ignore[method-assign]
    try:
        yield made
    finally:
        loop.create_future, loop.create_task = create_future, create_task  # type: ignore[method-assign]


async def test_a_slow_redis_joins_more_and_no_append_costs_a_future_or_a_task(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = AppendTicks(redis, settings)
    writers = await _writers(runs, ticks, 40)
    sent = _count_round_trips(ticks, monkeypatch)
    slow = asyncio.Event()  # Redis answers once the test says so: the writers' text meanwhile waits for it
    hold_replies(monkeypatch, ticks._round_trips, slow)
    with _counting(asyncio.get_running_loop()) as made:
        for step in range(5):  # five windows of text from each run
            for writer in writers:
                await writer.delta(f"{step} ")
            await asyncio.sleep(ticks.interval)
        slow.set()
        await eventually(lambda: all(writer.lease.journal.written == 5 for writer in writers))
    # The first window's appends went out at once; what came while they were out joined the next call.
    assert sent == [["lean"], ["lean"]]
    assert sum(made) <= 3 * len(sent), made  # per round trip, not per append (80) nor per token (200)
    for writer in writers:
        assert _texts(await store.read(writer.lease.session_id, 0, 20)) == ["first", "0 ", "1 2 3 4 "]


async def test_a_count_found_off_sends_the_call_s_appends_the_checked_way(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis lost or took a call of the process the process did not hear of: the lean call writes
    # nothing, and its appends go checked (a try that went through is found, events lost appended again).
    ticks = AppendTicks(redis, settings)
    writers = await _writers(runs, ticks, 2)
    assert ticks._counter is not None
    await redis.incr(ticks._counter.key)
    sent = _count_round_trips(ticks, monkeypatch)
    for writer in writers:
        await writer.delta("after")
    await asyncio.gather(*(writer.flush() for writer in writers))
    assert sent == [["lean"], ["checked"]]
    for writer in writers:
        assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "after"]


async def test_after_a_third_of_a_lease_with_nothing_heard_from_redis_appends_go_the_checked_way(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process stopped or cut off that long may have missed a session deleted and made again under its
    # id: its next appends are checked whole.
    ticks = AppendTicks(redis, settings.model_copy(update={"lease_ms": 600}))  # (the runs' leases stay long)
    (writer,) = await _writers(runs, ticks, 1)
    await asyncio.sleep(3 * ticks._patience)
    sent = _count_round_trips(ticks, monkeypatch)
    await _say(writer, "after a silence")
    assert sent == [["checked"]]
    assert _texts(await store.read(writer.lease.session_id, 0, 10)) == ["first", "after a silence"]


async def test_the_count_of_a_worker_s_calls_is_kept_a_day_from_its_first_call_and_every_256th(
    runs: AllWrites, settings: Settings, redis: Redis
) -> None:
    ticks = AppendTicks(redis, settings)
    (writer,) = await _writers(runs, ticks, 1)  # a checked call, then lean ones
    key = ticks._counter.key
    assert 0 < await redis.pttl(key) <= 86_400_000
    await redis.persist(key)
    await redis.set(key, 254, keepttl=True)
    ticks._counter.count(writer.lease.slot).expected = 254
    await _say(writer, "255th")
    assert await redis.pttl(key) == -1  # (not every call: on a cluster, a lean call is made per event)
    await _say(writer, "256th")
    assert await redis.pttl(key) == -1
    await _say(writer, "257th")
    assert 0 < await redis.pttl(key) <= 86_400_000
    assert int(await redis.get(key)) == 257  # each call counted, as expected: lean all the way


async def test_what_was_acknowledged_is_in_the_run_s_journal(runs: AllWrites, settings: Settings, redis: Redis) -> None:
    ticks = AppendTicks(redis, settings)
    (writer,) = await _writers(runs, ticks, 1)
    await _say(writer, "second")
    journal = writer.lease.journal
    assert [(append.first, append.last) for append in journal.lost(2) or []] == [(3, 3), (4, 4)]


async def test_the_leases_of_many_runs_are_renewed_together_and_a_lost_one_alone_is_told(
    redis: Redis, runs: AllWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = [await start_a_run(runs) for _ in range(20)]
    await round_trips(redis)(("PING",))  # the connection open: only renewals are written below
    written = log_writes(monkeypatch)
    lost: list[int] = []
    keepers = [
        LeaseKeeper(
            RunLease(runs, sid, run.run_id, "lease-1" if i else "someone-else"),
            600,
            on_cancel=lambda: None,
            on_lost=lambda i=i: lost.append(i),  # type: ignore[misc]
        )
        for i, (sid, run) in enumerate(started)
    ]
    holders = [asyncio.create_task(_hold(keeper)) for keeper in keepers]
    await eventually(lambda: len(written) >= 3, what="three beats of renewals")  # a beat is 0.2 s
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    # About one round trip per beat, not one per run per beat: on a loaded machine a beat's renewals
    # may split over two round trips, so count calls per round trip.
    counted = [commands for _, commands in written]
    assert len(counted) >= 2 and sum(counted) / len(counted) >= 5, counted
    assert lost == [0]


async def _hold(keeper: LeaseKeeper) -> None:
    async with keeper:
        await asyncio.sleep(3600)  # until the test cancels it


async def test_a_round_trip_cancelled_before_its_replies_leaves_no_reply_behind(
    redis: Redis, store: SessionStore, runs: AllWrites, settings: Settings
) -> None:
    # The round trip reads its replies itself (not through redis-py's Pipeline): a connection left
    # with replies owed must not give them to the next round trip as its own.
    session_id, run = await start_a_run(runs)
    keys = runs.keys.session(session_id)
    append = AppendEvents(
        AppendShared(settings.stream_maxlen),
        AppendKeys(keys.meta, keys.events, keys.lease),
        run.run_id,
        "lease-1",
        0,
        list(delta_of(run.run_id, "a")),
    )
    script = redis.register_script(AppendEvents.lua_source(Topology()))
    await script(keys=append.keys(Topology()), args=append.args())  # loaded, and one delta appended
    call = ("EVALSHA", script.sha, 3, *append.keys(Topology()), *append.args())
    trips = round_trips(redis)
    cut = asyncio.create_task(trips(*[call] * 50))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # sent (or sending), no reply read yet
    cut.cancel()
    await asyncio.gather(cut, return_exceptions=True)
    seq = await (await held(runs, session_id, run.run_id)).append([delta_of(run.run_id, "b")])
    assert seq == len(await store.read(session_id, 0, 100))  # its own reply: the seq of its event


async def test_text_that_cannot_be_an_event_fails_its_run_alone_and_the_tick_goes_on(
    runs: AllWrites, store: SessionStore, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lone surrogate has no UTF-8: its delta's JSON cannot be made. Its run fails at its next call; the
    # tick's other appends go, and the ticks go on (a tick that raised would have stopped every run's).
    ticks = AppendTicks(redis, settings)
    broken, fine = await _writers(runs, ticks, 2)
    sent = _count_round_trips(ticks, monkeypatch)
    await broken.delta("bad \ud800 text")
    await fine.delta("good")
    await fine.flush()
    with pytest.raises(Exception, match="surrogates not allowed"):
        await broken.flush()
    await _say(fine, " and on")
    assert sent == [["lean"], ["lean"]]
    assert _texts(await store.read(fine.lease.session_id, 0, 10)) == ["first", "good", " and on"]
    assert _texts(await store.read(broken.lease.session_id, 0, 10)) == ["first"]
