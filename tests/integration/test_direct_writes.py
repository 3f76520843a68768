"""The hub's direct writes (gateway/live/hub.py's `Direct`, through gateway/protocol.py's
`DirectBody`), through uvicorn on loopback against a real Redis: the same bytes as the feed's own
path, never ahead of what the feed's task sends, a slow client sent back to Redis and back live, a
run's end, heartbeats and counts as before."""

import asyncio
import contextlib
import json
import re
import secrets
import socket
from collections.abc import Callable
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from tests.fixtures.stack import Gateway
from tests.support.sessions import completion, held, start_a_run
from tests.support.waiting import eventually
from tests.support.writes import AllWrites
from tokentail.gateway import metrics
from tokentail.gateway.encodings import ndjson, sse
from tokentail.gateway.live import subscription as subscription_module
from tokentail.gateway.live.first_delta import FirstDeltas
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.live.subscription import Subscription
from tokentail.gateway.protocol import DirectBody
from tokentail.gateway.reading.feed import EventFeed
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.events import MessageDelta, ToolCompleted, ToolStarted

SSE, NDJSON = "text/event-stream", "application/x-ndjson"


class RawStream:
    """A stream read on a raw socket: its body, de-chunked (each chunk's size checked), as it comes.
    `pause`: it reads nothing (with a small receive buffer, its connection soon fills)."""

    def __init__(self, port: int, path: str, accept: str = SSE, last_event_id: int | None = None) -> None:
        self.port, self.path, self.accept, self.last_event_id = port, path, accept, last_event_id
        self.status = 0
        self.body = bytearray()
        self.ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self, receive_buffer: int | None = None) -> "RawStream":
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, self._writer = await asyncio.open_connection(sock=sock, limit=1 << 24)
        last = f"Last-Event-ID: {self.last_event_id}\r\n" if self.last_event_id is not None else ""
        self._writer.write(f"GET {self.path} HTTP/1.1\r\nHost: x\r\nAccept: {self.accept}\r\n{last}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        if self.status == 200:
            assert b"transfer-encoding: chunked" in head.lower()
            self._task = asyncio.create_task(self._read(reader))
        else:
            self.ended.set()
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            chunk = await reader.readexactly(size + 2)
            assert chunk.endswith(b"\r\n"), "a chunk longer or shorter than its size"
            if size == 0:
                self.ended.set()
                return
            self.body += chunk[:-2]

    @property
    def ids(self) -> list[int]:
        if self.accept == NDJSON:
            return [int(i) for i in re.findall(rb'^\{"id":(\d+),', self.body, re.MULTILINE)]
        return [int(i) for i in re.findall(rb"^id: (\d+)$", self.body, re.MULTILINE)]

    async def until(self, last: int) -> None:
        await eventually(lambda: bool(self.ids) and self.ids[-1] >= last, what=f"the client reading up to {last}")

    def pause(self) -> None:
        assert self._writer is not None
        cast(asyncio.Transport, self._writer.transport).pause_reading()

    def resume(self) -> None:
        assert self._writer is not None
        cast(asyncio.Transport, self._writer.transport).resume_reading()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.IncompleteReadError, ConnectionError):
                await self._task
        if self._writer is not None:
            self._writer.close()


class DirectWrites:
    """Every body `DirectBody` wrote (patched on its class, before any stream opens)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bodies: list[bytes] = []
        write = DirectBody.write

        def counted(direct: DirectBody, body: bytes) -> bool:
            done = write(direct, body)
            if done:
                self.bodies.append(body)
            return done

        monkeypatch.setattr(DirectBody, "write", counted)


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> DirectWrites:
    return DirectWrites(monkeypatch)


@pytest.fixture
def task_path(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Switches the direct writes off: every chunk goes through the feed's task, as without the offer."""

    def off() -> None:
        monkeypatch.setattr(EventFeed, "write_directly", lambda *args: None)

    return off


@pytest.fixture
async def gateway(start_gateway: Callable[..., Any]) -> Gateway:
    # No heartbeat while a test runs (a body is compared byte for byte); `StreamHub.tick` makes one.
    gateway: Gateway = await start_gateway(sse_heartbeat_seconds=3600.0, stalled_client_seconds=600.0)
    return gateway


def _hub(gateway: Gateway) -> StreamHub:
    hub: StreamHub = gateway.app.state.hub
    return hub


def _subscription(gateway: Gateway, store: SessionStore, session_id: str) -> Subscription:
    channel = _hub(gateway)._channels[store.keys.session(session_id).events.encode()]
    (subscription,) = channel.subscriptions
    return subscription


async def _waiting(gateway: Gateway, store: SessionStore, session_id: str, direct: bool = True) -> Subscription:
    """Until the session's one follower waits, live (holding a `Direct` if `direct`)."""

    def waits() -> Subscription | bool:  # (not None: `eventually` takes None for a check that passed)
        channel = _hub(gateway)._channels.get(store.keys.session(session_id).events.encode())
        if channel is None or len(channel.subscriptions) != 1:
            return False
        (subscription,) = channel.subscriptions
        ready = subscription.live and subscription._waiter is not None
        return subscription if ready and (subscription.direct is not None) == direct else False

    found = await eventually(waits, what="the follower waiting, live")
    assert isinstance(found, Subscription)
    return found


async def _append(
    runs: AllWrites, session_id: str, run_id: str, events: list[tuple[str, str]] | None = None, ending: Any = None
) -> int:
    """`events` (a text delta by default) appended as the run's worker would, from where it stands
    now, and its `ending`; the last id."""
    events = [_delta(run_id)] if events is None else events
    return await (await held(runs, session_id, run_id)).append(events, ending=ending)


def _delta(run_id: str, text: str | None = None) -> tuple[str, str]:
    return "message.delta", MessageDelta(run_id=run_id, text=text or secrets.token_hex(4)).model_dump_json()


async def _live_run(
    gateway: Gateway, store: SessionStore, runs: AllWrites, accept: str, direct: bool
) -> tuple[RawStream, bytes]:
    """A run followed live from its start, every kind of append its worker makes (one event, several,
    a tool's, some text not in ASCII), then its end: the client's body, and what it should be."""
    session_id, run = await start_a_run(runs)
    stream = await RawStream(gateway.port, f"/v1/sessions/{session_id}/events", accept).open()
    try:
        rid = run.run_id
        appends = [
            [_delta(rid, "Hello")],
            [_delta(rid, f" w{i} — é") for i in range(5)],  # one append: one read, one chunk, one write
            [("tool.started", ToolStarted(run_id=rid, call_id="c", name="t", arguments={"q": "ü"}).model_dump_json())],
            [("tool.completed", ToolCompleted(run_id=rid, call_id="c", result=[1], duration_ms=2).model_dump_json())],
            *([_delta(rid)] for _ in range(10)),
        ]
        for events in appends:
            await _waiting(gateway, store, session_id, direct)
            last = await _append(runs, session_id, rid, events)
            await stream.until(last)
        await _append(runs, session_id, rid, [], ending=completion(rid, "Hello"))
        await asyncio.wait_for(stream.ended.wait(), 10)
    finally:
        await stream.close()
    stored = await store.read(session_id, 0, 1000)
    if accept == NDJSON:
        return stream, ndjson.ndjson_events(stored)
    return stream, b"retry: %d\n\n" % gateway.settings.sse_retry_ms + sse.encode_events(stored)


@pytest.mark.parametrize("accept", [SSE, NDJSON])
async def test_frames_written_straight_to_the_socket_are_the_feeds_own_bytes(
    gateway: Gateway,
    store: SessionStore,
    runs: AllWrites,
    accept: str,
    direct_writes: DirectWrites,
    task_path: Callable[[], None],
) -> None:
    direct, expected = await _live_run(gateway, store, runs, accept, direct=True)
    assert bytes(direct.body) == expected
    assert len(direct_writes.bodies) == 14  # each live append but the run's end went straight to the socket
    assert not any(b"run.completed" in body for body in direct_writes.bodies)  # the end: through the feed
    task_path()
    written = len(direct_writes.bodies)
    taken, expected = await _live_run(gateway, store, runs, accept, direct=False)
    assert bytes(taken.body) == expected
    assert len(direct_writes.bodies) == written


async def test_a_run_s_end_ends_the_stream_through_the_feed_and_the_next_reconnect_is_204(
    gateway: Gateway, store: SessionStore, runs: AllWrites, direct_writes: DirectWrites
) -> None:
    session_id, run = await start_a_run(runs)
    path = f"/v1/sessions/{session_id}/events"
    stream = await RawStream(gateway.port, path).open()
    for _ in range(3):
        await _waiting(gateway, store, session_id)
        await stream.until(await _append(runs, session_id, run.run_id))
    assert len(direct_writes.bodies) == 3
    last = await _append(runs, session_id, run.run_id, [], ending=completion(run.run_id, "done"))
    await asyncio.wait_for(stream.ended.wait(), 10)
    await stream.close()
    assert stream.ids == list(range(1, last + 1))
    assert stream.body.endswith(b'"output":"done"}\n\n')
    assert len(direct_writes.bodies) == 3
    again = await RawStream(gateway.port, path, last_event_id=last).open()
    await again.close()
    assert again.status == 204


async def test_no_live_frame_goes_ahead_of_a_catch_up_page_on_its_way(
    gateway: Gateway,
    store: SessionStore,
    runs: AllWrites,
    direct_writes: DirectWrites,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session_id, run = await start_a_run(runs)
    backlog = 0
    for _ in range(6):  # pages of a few hundred KB: several catch-up reads
        backlog = await _append(runs, session_id, run.run_id, [_delta(run.run_id, "x" * 4000)] * 40)
    # Hold the send of the page that ends the backlog, in uvicorn's own `send`, until the test says.
    last_page, holding, release = b"id: %d\n" % backlog, asyncio.Event(), asyncio.Event()
    send = RequestResponseCycle.send

    async def held_send(cycle: RequestResponseCycle, message: Any) -> None:
        if last_page in message.get("body", b""):
            holding.set()
            await release.wait()
        await send(cycle, message)

    monkeypatch.setattr(RequestResponseCycle, "send", held_send)
    stream = await RawStream(gateway.port, f"/v1/sessions/{session_id}/events").open()
    try:
        await asyncio.wait_for(holding.wait(), 30)
        subscription = _subscription(gateway, store, session_id)
        live = 0
        for _ in range(5):  # notified while the page is on its way: the follower may well be live by now
            live = await _append(runs, session_id, run.run_id)
        await eventually(lambda: subscription.queued == live or not subscription.live, what="the hub's notifications")
        assert direct_writes.bodies == []
        assert not stream.ids or stream.ids[-1] < backlog  # nothing of the live events before the page
        release.set()
        await stream.until(live)
        assert stream.ids == list(range(1, live + 1))
        # And then live again, straight to the socket.
        await _waiting(gateway, store, session_id)
        await stream.until(await _append(runs, session_id, run.run_id))
        assert len(direct_writes.bodies) == 1
        assert stream.ids == list(range(1, live + 2))
    finally:
        release.set()
        await stream.close()


async def test_a_client_too_slow_for_the_live_path_reads_from_redis_then_comes_back_live(
    gateway: Gateway,
    store: SessionStore,
    runs: AllWrites,
    direct_writes: DirectWrites,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound = 65_536
    monkeypatch.setattr(subscription_module, "BUFFER_BYTES", bound)
    session_id, run = await start_a_run(runs)
    stream = await RawStream(gateway.port, f"/v1/sessions/{session_id}/events").open(receive_buffer=4096)
    behind = metrics.HUB_CATCH_UPS.labels("behind")._value.get()
    try:
        subscription = await _waiting(gateway, store, session_id)
        transport = subscription.writer().transport  # type: ignore[misc,operator]  # (a DirectBody: its cycle)
        # The kernel's buffer small too (on loopback it would grow to megabytes): the gateway's fill.
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        await stream.until(await _append(runs, session_id, run.run_id))
        assert len(direct_writes.bodies) == 1
        stream.pause()  # the client stops reading
        last, most_held = 0, 0
        for _ in range(100):  # 100 appends of 8 KB: far more than the sockets and the bound hold
            last = await _append(runs, session_id, run.run_id, [_delta(run.run_id, "y" * 8000)])
            waiting = subscription.pending_bytes + subscription.spill_bytes
            assert waiting <= bound  # what waits in the gateway for this client stays bounded...
            most_held = max(most_held, transport.get_write_buffer_size())
        assert most_held <= 256 * 1024  # ...and so does what its connection holds (high-water mark, one batch)
        assert metrics.HUB_CATCH_UPS.labels("behind")._value.get() > behind  # it left the live path
        direct_before = len(direct_writes.bodies)
        stream.resume()  # reading again: it catches up from Redis
        await stream.until(last)
        # Back on the live path: the next append goes straight to its socket.
        await _waiting(gateway, store, session_id)
        last = await _append(runs, session_id, run.run_id)
        await stream.until(last)
        assert len(direct_writes.bodies) > direct_before
        assert stream.ids == list(range(1, last + 1))  # nothing lost, nothing twice
    finally:
        await stream.close()


async def test_no_ping_while_frames_flow_and_one_after_a_heartbeat_with_nothing_sent(
    gateway: Gateway, store: SessionStore, runs: AllWrites, direct_writes: DirectWrites
) -> None:
    session_id, run = await start_a_run(runs)
    stream = await RawStream(gateway.port, f"/v1/sessions/{session_id}/events").open()
    hub = _hub(gateway)
    try:
        for _ in range(6):  # a frame in every half heartbeat (the hub's tick)
            await _waiting(gateway, store, session_id)
            await stream.until(await _append(runs, session_id, run.run_id))
            hub.tick()
        assert len(direct_writes.bodies) == 6
        assert b": ping" not in stream.body
        last = bytes(stream.body)
        hub.tick()  # a whole heartbeat with nothing sent
        await eventually(lambda: stream.body.endswith(b": ping\n\n"), what="a ping")
        assert stream.body == last + b": ping\n\n"
    finally:
        await stream.close()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "taken"])
async def test_events_sent_and_first_deltas_count_alike_on_both_paths(
    gateway: Gateway,
    store: SessionStore,
    runs: AllWrites,
    direct: bool,
    direct_writes: DirectWrites,
    task_path: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not direct:
        task_path()
    told: list[tuple[str, str]] = []
    monkeypatch.setattr(FirstDeltas, "written", lambda self, session_id, run_id: told.append((session_id, run_id)))
    sent = metrics.EVENTS_SENT.labels("sse")
    before = sent._value.get()
    session_id, run = await start_a_run(runs)
    stream = await RawStream(gateway.port, f"/v1/sessions/{session_id}/events").open()
    try:
        for events in ([("status", json.dumps({"run_id": run.run_id, "text": "looking"}))], [_delta(run.run_id)] * 3):
            await _waiting(gateway, store, session_id, direct)
            await stream.until(await _append(runs, session_id, run.run_id, events))
        for _ in range(4):
            await _waiting(gateway, store, session_id, direct)
            await stream.until(await _append(runs, session_id, run.run_id))
        last = await _append(runs, session_id, run.run_id, [], ending=completion(run.run_id))
        await asyncio.wait_for(stream.ended.wait(), 10)
    finally:
        await stream.close()
    assert stream.ids == list(range(1, last + 1))
    assert sent._value.get() - before == last  # each event the client got, once
    assert told == [(session_id, run.run_id)]  # the run's first delta, once
    assert bool(direct_writes.bodies) is direct


async def test_direct_followers_lose_nothing_when_the_hubs_connection_is_killed(
    start_gateway: Callable[..., Any], private_redis_url: str, settings: Settings, direct_writes: DirectWrites
) -> None:
    alone = settings.model_copy(update={"redis_url": private_redis_url})
    gateway: Gateway = await start_gateway(redis_url=private_redis_url, sse_heartbeat_seconds=3600.0)
    redis = Redis.from_url(private_redis_url)
    runs, store = AllWrites(redis, alone), SessionStore(redis, alone)
    sessions = [await start_a_run(runs) for _ in range(3)]
    streams = [await RawStream(gateway.port, f"/v1/sessions/{sid}/events").open() for sid, _ in sessions]
    reconnects = metrics.HUB_RECONNECTS._value.get()
    try:
        for _ in range(2):
            for sid, _ in sessions:
                await _waiting(gateway, store, sid)
            written = len(direct_writes.bodies)
            lasts = [await _append(runs, sid, run.run_id) for sid, run in sessions]
            for stream, last in zip(streams, lasts, strict=True):
                await stream.until(last)
            assert len(direct_writes.bodies) == written + len(sessions)  # straight to the sockets
            await redis.client_kill_filter(_type="pubsub")  # the hub's notifications connection
            for _ in range(5):  # appended while the hub is away: their notifications are lost
                lasts = [await _append(runs, sid, r.run_id) for sid, r in sessions]
            for stream, last in zip(streams, lasts, strict=True):
                await stream.until(last)
                assert stream.ids == list(range(1, last + 1))
        assert metrics.HUB_RECONNECTS._value.get() >= reconnects + 2
    finally:
        for stream in streams:
            await stream.close()
        await redis.aclose()
