"""The worker's script pipelines against a real Redis: many runs share round trips, each run's
appends stay ordered, fenced and idempotent, and renewals of many leases go together."""

import asyncio
import functools
import json
from typing import Any

import hiredis
import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from tests.sessions import held, start_a_run
from tests.waiting import eventually, scaled
from tests.writes import AllWrites
from tokentail.shared import outage
from tokentail.shared.errors import LeaseLost
from tokentail.shared.keys import Keys
from tokentail.shared.scripts.contract import Topology
from tokentail.shared.scripts.pipeline import JOINED_CALLS, ScriptPipeline, append_pipeline
from tokentail.shared.scripts.runs import AppendEvents, AppendKeys, AppendShared, RenewLease
from tokentail.shared.settings import Settings
from tokentail.shared.store import SessionStore
from tokentail.worker.lease import LeaseKeeper
from tokentail.worker.run_writes import RunLease


@pytest.fixture
def pipeline(redis: Redis, settings: Settings) -> ScriptPipeline:
    return append_pipeline(redis, Topology(), Keys(settings.key_prefix))


def _count_round_trips(pipeline: ScriptPipeline, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pipeline's round trips from now on: one entry (its number of script calls) per round trip."""
    round_trips: list[int] = []
    send = pipeline._round_trips._round_trip

    async def counted(packed):  # type: ignore[no-untyped-def]
        round_trips.append(len(packed))
        return await send(packed)

    monkeypatch.setattr(pipeline._round_trips, "_round_trip", counted)
    return round_trips


def _batched(redis: Redis, settings: Settings, appends: ScriptPipeline) -> AllWrites:
    """A run lifecycle that sends its appends through `appends`, as the worker's does."""
    return AllWrites(redis, settings, batched={AppendEvents: appends})


def delta_of(run_id: str, text: str) -> tuple[str, str]:
    return ("message.delta", json.dumps({"run_id": run_id, "text": text}))


async def test_many_runs_share_round_trips_and_each_keeps_its_order(
    redis: Redis,
    store: SessionStore,
    runs: AllWrites,
    settings: Settings,
    pipeline: ScriptPipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = _batched(redis, settings, pipeline)
    started = [await start_a_run(runs) for _ in range(20)]
    round_trips = _count_round_trips(pipeline, monkeypatch)

    async def write(session_id: str, run_id: str) -> None:
        for i in range(10):  # one at a time per run, as a writer does
            await RunLease(runs, session_id, run_id, "lease-1").append([delta_of(run_id, str(i))])

    await asyncio.gather(*(write(session_id, run.run_id) for session_id, run in started))
    assert len(round_trips) <= 10 * 2  # 200 appends in about as many round trips as one run's appends
    assert max(round_trips) == 1  # and each round trip's appends (up to JOINED_CALLS) in one script call
    for session_id, _ in started:
        events = await store.read(session_id, 0, 100)
        texts = [json.loads(e.data)["text"] for e in events if e.type == b"message.delta"]
        assert texts == [str(i) for i in range(10)]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_fenced_run_fails_alone_in_a_shared_round_trip(
    redis: Redis, store: SessionStore, runs: AllWrites, settings: Settings, pipeline: ScriptPipeline
) -> None:
    runs = _batched(redis, settings, pipeline)
    (ours, ours_run), (theirs, theirs_run) = await start_a_run(runs), await start_a_run(runs)
    results = await asyncio.gather(
        RunLease(runs, ours, ours_run.run_id, "lease-1").append([delta_of(ours_run.run_id, "a")]),
        RunLease(runs, theirs, theirs_run.run_id, "not-the-lease").append([delta_of(theirs_run.run_id, "b")]),
        return_exceptions=True,
    )
    assert isinstance(results[0], int) and isinstance(results[1], LeaseLost)
    assert [e.seq for e in await store.read(theirs, 0, 10)] == [1, 2]  # nothing written for the fenced run


async def test_a_tick_s_appends_are_one_call_and_each_writer_is_told_its_own_reply(
    redis: Redis,
    store: SessionStore,
    settings: Settings,
    pipeline: ScriptPipeline,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = _batched(redis, settings, pipeline)
    started = [await start_a_run(runs) for _ in range(4)]
    leases = [await held(runs, session_id, run.run_id) for session_id, run in started]
    leases[1] = RunLease(runs, started[1][0], started[1][1].run_id, "not-the-lease")  # fenced
    await redis.script_load(AppendEvents.lua_source(Topology()))  # not a NOSCRIPT and a second try
    round_trips = _count_round_trips(pipeline, monkeypatch)
    told: dict[int, int | BaseException] = {}
    everyone_told = asyncio.Event()

    def landed(number: int, reply: int | BaseException) -> None:
        told[number] = reply
        if len(told) == len(leases):
            everyone_told.set()
        if number == 2:
            raise RuntimeError("a bug in one writer")  # the writers after it are told all the same

    for number, lease in enumerate(leases):  # in one loop step, as at a tick
        lease.append_soon([delta_of(lease.run_id, "a")], f"append-{number}", functools.partial(landed, number))
    await asyncio.wait_for(everyone_told.wait(), timeout=scaled(10))
    assert round_trips == [1]  # one round trip, one script call
    assert isinstance(told[1], LeaseLost)
    assert [told[n] for n in (0, 2, 3)] == [3, 3, 3]  # each after its run.queued and run.started
    assert "its append's reply could not be handled" in caplog.text
    for number, (session_id, _) in enumerate(started):
        assert len(await store.read(session_id, 0, 10)) == (2 if number == 1 else 3)


async def test_appends_go_on_after_redis_lost_its_scripts(
    redis: Redis, settings: Settings, pipeline: ScriptPipeline
) -> None:
    runs = _batched(redis, settings, pipeline)
    session_id, run = await start_a_run(runs)
    await RunLease(runs, session_id, run.run_id, "lease-1").append([delta_of(run.run_id, "a")])
    await redis.script_flush()  # as a restart without persistence of scripts would
    seq = await RunLease(runs, session_id, run.run_id, "lease-1").append([delta_of(run.run_id, "b")])
    assert seq == 4


async def test_a_retried_append_is_not_written_twice(
    redis: Redis,
    store: SessionStore,
    runs: AllWrites,
    settings: Settings,
    pipeline: ScriptPipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = _batched(redis, settings, pipeline)
    session_id, run = await start_a_run(runs)
    await (await held(runs, session_id, run.run_id)).append([delta_of(run.run_id, "a")])  # the count is known
    lease = await held(runs, session_id, run.run_id)
    execute = pipeline._execute
    lost: list[Any] = []

    async def losing(calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        replies = await execute(calls)  # Redis ran the joined call...
        if not lost:
            lost.append(calls)
            raise redis_errors.ConnectionError("Connection closed by server.")  # ...and its reply was lost
        return replies

    monkeypatch.setattr(pipeline, "_execute", losing)
    # Sent again by the lease's ride-out, with the same last seq: found where its first try put it.
    assert await lease.append([delta_of(run.run_id, "b")], append_id="x-1") == 4 and lost
    assert len(await store.read(session_id, 0, 10)) == 4


async def test_a_broken_round_trip_fails_every_append_in_it(
    redis: Redis, settings: Settings, pipeline: ScriptPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _batched(redis, settings, pipeline)
    started = [await start_a_run(runs) for _ in range(3)]

    async def broken(calls):  # type: ignore[no-untyped-def]
        raise ConnectionError("Redis went away")

    monkeypatch.setattr(pipeline._round_trips, "_round_trip", broken)
    monkeypatch.setattr(outage, "OUTAGE_SECONDS", 0.5)  # the appends ride the outage out, briefly here
    results = await asyncio.gather(
        *(RunLease(runs, sid, run.run_id, "lease-1").append([delta_of(run.run_id, "a")]) for sid, run in started),
        return_exceptions=True,
    )
    assert all(isinstance(result, ConnectionError) for result in results)
    monkeypatch.undo()
    session_id, run = started[0]
    assert await RunLease(runs, session_id, run.run_id, "lease-1").append([delta_of(run.run_id, "b")]) == 3


async def test_the_leases_of_many_runs_are_renewed_together_and_a_lost_one_alone_is_told(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    renewals = ScriptPipeline(redis, RenewLease.lua_source(Topology()))
    runs = AllWrites(redis, settings, batched={RenewLease: renewals})
    started = [await start_a_run(runs) for _ in range(20)]
    round_trips = _count_round_trips(renewals, monkeypatch)
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
    await eventually(lambda: len(round_trips) >= 3, what="three beats of renewals")  # a beat is 0.2 s
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    # About one round trip per beat, not one per run per beat: on a loaded machine a beat's renewals
    # may split over two round trips, so count calls per round trip (1 without the pipeline).
    assert len(round_trips) >= 2 and sum(round_trips) / len(round_trips) >= 5, round_trips
    assert lost == [0]


async def _hold(keeper: LeaseKeeper) -> None:
    async with keeper:
        await asyncio.sleep(3600)  # until the test cancels it


async def test_a_round_trip_cancelled_before_its_replies_leaves_no_reply_behind(
    redis: Redis, store: SessionStore, runs: AllWrites, settings: Settings, pipeline: ScriptPipeline
) -> None:
    # The round trip reads its replies itself (not through redis-py's Pipeline): a connection left
    # with replies owed must not give them to the next round trip as its own.
    runs = _batched(redis, settings, pipeline)
    session_id, run = await start_a_run(runs)
    append = AppendEvents(
        AppendShared(settings.stream_maxlen),
        AppendKeys(*(getattr(runs.keys.session(session_id), key) for key in ("meta", "events", "lease"))),
        run.run_id,
        "lease-1",
        "cancelled-1",
        0,
        list(delta_of(run.run_id, "a")),
    )
    keys, args = append.keys(Topology()), append.args()
    call = hiredis.pack_command(("EVALSHA", pipeline._script.sha, len(keys), *keys, *args))
    cut = asyncio.create_task(pipeline._round_trips._round_trip([call] * 50))
    await asyncio.sleep(0)  # sent (or sending), no reply read yet
    cut.cancel()
    await asyncio.gather(cut, return_exceptions=True)
    seq = await RunLease(runs, session_id, run.run_id, "lease-1").append([delta_of(run.run_id, "b")])
    assert seq == len(await store.read(session_id, 0, 100))  # its own reply: the seq of its event


async def test_more_appends_than_one_script_call_takes_go_as_several_in_one_round_trip(
    redis: Redis, store: SessionStore, settings: Settings, pipeline: ScriptPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _batched(redis, settings, pipeline)
    started = [await start_a_run(runs) for _ in range(JOINED_CALLS + 6)]
    round_trips = _count_round_trips(pipeline, monkeypatch)
    seqs = await asyncio.gather(
        *(RunLease(runs, s, run.run_id, "lease-1").append([delta_of(run.run_id, "x")]) for s, run in started)
    )
    assert seqs == [3] * len(started)  # run.queued, run.started, then this delta: each its own reply
    assert round_trips == [2]  # asked in one loop step: one round trip, two script calls
