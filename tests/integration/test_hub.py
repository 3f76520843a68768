"""The gateway's stream hub against a real Redis: one reader for all followers, and every hand-over
(catch-up to live, live to catch-up, a lost connection) with no id dropped or repeated, for followers
whose live chunks the hub writes straight to their client (`direct`) and for those that take them."""

import asyncio
import contextlib
import json
import random
import re
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.support.sessions import delta_of, start_a_run
from tests.support.waiting import eventually
from tests.support.write_side import lease_of
from tests.support.writes import AllWrites
from tokentail.gateway import metrics as gateway_metrics
from tokentail.gateway.encodings import sse
from tokentail.gateway.live import subscription as subscription_module
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.feed import EventFeed, Start
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore, StoredEvent
from tokentail.shared.vocabulary.events import RunCompleted
from tokentail.worker.writes import run_writes
from tokentail.worker.writes.run_writes import RunLease


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[StreamHub]:
    hub = StreamHub(settings, read_connections=3)
    await hub.start()
    yield hub
    await hub.aclose()


@pytest.fixture
async def alone(private_redis_url: str, settings: Settings) -> AsyncIterator[tuple[Redis, AllWrites, StreamHub]]:
    """A Redis of this test's own (it kills clients, counts them), its run lifecycle and a hub on it."""
    settings = settings.model_copy(update={"redis_url": private_redis_url})
    redis = Redis.from_url(private_redis_url)
    hub = StreamHub(settings, read_connections=3)
    await hub.start()
    yield redis, AllWrites(redis, settings), hub
    await hub.aclose()
    await redis.aclose()


class Follower:
    """A feed read into a list by a task of its own, as a transport would; `direct`: also written to
    by the hub (SSE frames, as gateway/protocol.py's `DirectBody` would), into the same list, in the
    order of the writes, until `refusing` (a connection paused)."""

    def __init__(
        self, hub: StreamHub, session_id: str, after: int = 0, until_idle: bool = False, direct: bool = False
    ) -> None:
        self.feed = EventFeed(hub, session_id, Start(after, None, False), 500, until_idle, "sse")
        self.seqs: list[int] = []
        self.datas: list[bytes] = []
        self.pings = 0
        self.chunks: dict[int, object] = {}  # last seq -> the chunk that brought it
        self.direct_writes = 0
        self.refusing = False
        if direct:
            self.feed.write_directly(sse.frame_entries, self)
        self.task = asyncio.create_task(self._read())

    def write(self, body: bytes) -> bool:  # (its feed's `Writer`)
        if self.refusing:
            return False
        self.direct_writes += 1
        for seq, data in re.findall(rb"^id: (\d+)\nevent: [^\n]*\ndata: ([^\n]*)\n\n", body, re.MULTILINE):
            self.seqs.append(int(seq))
            self.datas.append(data)
        return True

    async def _read(self) -> None:
        async for batch in self.feed:
            if not batch.chunks:
                self.pings += 1
            for chunk in batch.chunks:
                self.chunks[chunk.last] = chunk
            for event in batch.events:
                self.seqs.append(event.seq)
                self.datas.append(event.data)

    async def until(self, last: int) -> None:
        await eventually(lambda: bool(self.seqs) and self.seqs[-1] >= last, what=f"a follower reading up to {last}")

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _append(runs: AllWrites, session_id: str, run_id: str, n: int = 1, text: str | None = None) -> int:
    """`n` deltas of the run; a new text each call by default (each call is another worker's append
    that knows nothing of the last: equal to an append after the last seq it knew, it would be taken
    for that one sent again)."""
    delta = json.dumps({"run_id": run_id, "text": text or secrets.token_hex(4)})
    return await RunLease(runs, session_id, run_id, "lease-1").append([("message.delta", delta)] * n)


async def _live(*followers: Follower) -> None:
    await eventually(lambda: all(f.feed._subscription and f.feed._subscription.live for f in followers), within=5)


async def _command_calls(redis: Redis, *commands: str) -> int:
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{command}", {}).get("calls", 0)) for command in commands)


DIRECT = pytest.mark.parametrize("direct", [False, True], ids=["taken", "direct"])


@DIRECT
async def test_a_hundred_followers_of_one_session_cost_one_notification_per_event_and_no_read(
    hub: StreamHub, store: SessionStore, runs: AllWrites, redis: Redis, direct: bool
) -> None:
    session_id, run = await start_a_run(runs)
    followers = [Follower(hub, session_id, direct=direct) for _ in range(100)]
    try:
        await _live(*followers)
        # (The append script reads the stream's last id: XREVRANGE. The hub's and the store's reads:)
        reads_before = await _command_calls(redis, "xrange", "xread")
        lease = lease_of(runs, session_id, run)
        for i in range(50):
            last = await lease.append([delta_of(run.run_id, str(i))])
        for follower in followers:
            await follower.until(last)
        assert await _command_calls(redis, "xrange", "xread") == reads_before
        assert all(follower.seqs == list(range(1, last + 1)) for follower in followers)
        if direct:  # each written by the hub, framed once for all
            assert all(follower.direct_writes >= 40 for follower in followers)
        else:  # each event came as one chunk (encoded once) handed to every follower: one object, not copies
            assert len({id(follower.chunks[last]) for follower in followers}) == 1
    finally:
        for follower in followers:
            await follower.close()
    assert not hub._channels  # the last follower to leave unsubscribed the session


@DIRECT
async def test_followers_joining_while_a_writer_appends_get_every_id_once_in_order(
    hub: StreamHub, store: SessionStore, runs: AllWrites, direct: bool
) -> None:
    session_id, run = await start_a_run(runs)
    followers: list[Follower] = []
    written = 0

    async def write() -> int:
        nonlocal written
        for _ in range(300):
            written = await _append(runs, session_id, run.run_id)
            if random.random() < 0.3:
                await asyncio.sleep(0)
        return written

    writer = asyncio.create_task(write())
    while not writer.done():  # followers join at every point of the stream, resuming from anywhere in it
        followers.append(Follower(hub, session_id, after=random.randint(0, max(0, written - 1)), direct=direct))
        await asyncio.sleep(random.random() / 500)
    last = await writer
    try:
        for follower in followers:
            await follower.until(last)
            start = follower.seqs[0]
            assert follower.seqs == list(range(start, last + 1)), "a dropped or repeated id"
        assert len(followers) > 20
    finally:
        for follower in followers:
            await follower.close()


async def test_a_follower_that_stops_reading_is_bounded_then_reads_the_rest_from_redis(
    hub: StreamHub, store: SessionStore, runs: AllWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscription_module, "BUFFER_BYTES", 10_000)
    session_id, run = await start_a_run(runs)
    feed = EventFeed(hub, session_id, Start(0, None, False), 500, False, "sse").__aiter__()
    seqs = [event.seq for event in (await anext(feed)).events]  # caught up
    await _append(runs, session_id, run.run_id)
    seqs += [event.seq for event in (await anext(feed)).events]  # live
    (subscription,) = hub._channels[next(iter(hub._channels))].subscriptions
    assert subscription.live
    for _ in range(100):  # 100 events of 1 KB while the client reads nothing
        last = await _append(runs, session_id, run.run_id, text=secrets.token_hex(500))
        assert subscription.pending_bytes + subscription.spill_bytes <= 10_000
    assert not subscription.live  # it fell behind, dropping what waited
    try:
        async with asyncio.timeout(10):
            while seqs[-1] < last:
                seqs += [event.seq for event in (await anext(feed)).events]
    finally:
        await feed.aclose()
    assert seqs == list(range(1, last + 1))


@DIRECT
async def test_followers_lose_nothing_when_the_hubs_connection_is_killed_mid_stream(
    alone: tuple[Redis, AllWrites, StreamHub], direct: bool
) -> None:
    redis, runs, hub = alone
    session_id, run = await start_a_run(runs)
    followers = [Follower(hub, session_id, direct=direct) for _ in range(5)]
    reconnects = gateway_metrics.HUB_RECONNECTS._value.get()
    try:
        await _live(*followers)
        for _ in range(3):
            for _ in range(10):
                last = await _append(runs, session_id, run.run_id)
            await redis.client_kill_filter(_type="pubsub")  # the hub's notifications connection
            for _ in range(10):  # appended while the hub is away: their notifications are lost
                last = await _append(runs, session_id, run.run_id)
            for follower in followers:
                await follower.until(last)
                assert follower.seqs == list(range(1, last + 1))
        assert gateway_metrics.HUB_RECONNECTS._value.get() >= reconnects + 3
        if direct:  # written by the hub before and after each reconnect
            assert all(follower.direct_writes >= 3 for follower in followers)
    finally:
        for follower in followers:
            await follower.close()


async def test_open_streams_share_a_fixed_number_of_redis_connections(
    alone: tuple[Redis, AllWrites, StreamHub],
) -> None:
    redis, runs, hub = alone
    sessions = [await start_a_run(runs) for _ in range(50)]
    followers = [Follower(hub, session_id) for session_id, _ in sessions for _ in range(4)]
    try:
        await _live(*followers)
        clients = int((await redis.info("clients"))["connected_clients"])
        # This test's own client (a connection for its commands, one for its round trips:
        # shared/connections/round_trips.py), the hub's pool, its notifications: however many streams are open.
        assert clients <= 2 + 3 + 1
        for session_id, run in sessions:
            await _append(runs, session_id, run.run_id)
        for follower in followers:
            await follower.until(2)
    finally:
        for follower in followers:
            await follower.close()


@DIRECT
async def test_a_completed_run_reaches_live_followers_with_its_output_and_ends_their_streams(
    hub: StreamHub, store: SessionStore, runs: AllWrites, direct: bool
) -> None:
    session_id, run = await start_a_run(runs)
    follower = Follower(hub, session_id, until_idle=True, direct=direct)
    await _live(follower)
    await _append(runs, session_id, run.run_id, n=3)
    ending = RunCompleted(run_id=run.run_id, output="xxx", usage={})
    last = await RunLease(runs, session_id, run.run_id, "lease-1").append([], ending=ending)
    async with asyncio.timeout(5):
        await follower.task  # the feed ended: nothing left, nothing coming
    assert follower.seqs == list(range(1, last + 1))
    assert json.loads(follower.datas[-1])["output"] == "xxx"


async def test_a_completed_run_s_end_is_told_to_the_hub_with_its_output_so_it_reads_no_record(
    hub: StreamHub, store: SessionStore, runs: AllWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    # append.lua tells the hubs a completed run's end with its output (`told`): a live follower's end
    # costs no read of the run's record. A worker of a version before that tells it as stored: the hub
    # reads the output then, and holds the session's later events until it has (the order is kept).
    read: list[int] = []
    with_outputs = SessionStore.with_outputs

    async def counted(self: SessionStore, session_id: str, events: list[StoredEvent]) -> list[StoredEvent]:
        read.append(len(events))
        return await with_outputs(self, session_id, events)

    monkeypatch.setattr(SessionStore, "with_outputs", counted)
    session_id, run = await start_a_run(runs)
    follower = Follower(hub, session_id, until_idle=True)
    await _live(follower)
    ending = RunCompleted(run_id=run.run_id, output="told with it", usage={})
    last = await RunLease(runs, session_id, run.run_id, "lease-1").append([], ending=ending)
    await follower.until(last)
    assert json.loads(follower.datas[-1])["output"] == "told with it"
    assert read == []

    # As a worker of a version before told it: the stored event alone, with no output.
    monkeypatch.setattr(run_writes, "with_output", lambda data, output: data)
    second_id, second = await start_a_run(runs)
    older = Follower(hub, second_id, until_idle=True)
    await _live(older)
    ending = RunCompleted(run_id=second.run_id, output="read back", usage={})
    last = await RunLease(runs, second_id, second.run_id, "lease-1").append([], ending=ending)
    await older.until(last)
    assert read == [1]  # the hub read the record once: the notification had no output
    assert json.loads(older.datas[-1])["output"] == "read back"


async def test_followers_of_a_deleted_session_end_at_once_not_at_their_next_heartbeat(
    hub: StreamHub, store: SessionStore, runs: AllWrites, settings: Settings
) -> None:
    session_id, _ = await start_a_run(runs)
    follower = Follower(hub, session_id)
    await _live(follower)
    await runs.delete_session(await store.get_session(session_id))
    async with asyncio.timeout(settings.sse_heartbeat_seconds / 2):
        await follower.task


async def test_an_idle_follower_gets_heartbeats(
    hub: StreamHub, store: SessionStore, runs: AllWrites, settings: Settings
) -> None:
    session_id, _ = await start_a_run(runs)
    follower = Follower(hub, session_id)
    try:
        await asyncio.sleep(settings.sse_heartbeat_seconds * 3.5)
        assert 2 <= follower.pings <= 4
    finally:
        await follower.close()


async def test_stopping_the_hub_ends_every_stream(hub: StreamHub, store: SessionStore, runs: AllWrites) -> None:
    session_id, _ = await start_a_run(runs)
    followers = [Follower(hub, session_id) for _ in range(3)]
    await _live(*followers)
    hub.stop()
    async with asyncio.timeout(2):
        await asyncio.gather(*(follower.task for follower in followers))
