"""One reader per gateway process: every open stream is fed from one pub/sub connection (one per
primary on a Redis Cluster, where each session notifies on its shard).

append.lua publishes each event it appends, as `<seq> <ts> <type> <data>`, on a channel named like
the session's stream key. The hub subscribes to the sessions that have at least one follower in
this process, reads each event once, and hands the same events to every follower: framed once per
encoding for those it writes to straight (below), one `Chunk` for the others. Open streams cost no
Redis connection and no read of their own: the hub's connection, plus short catch-up reads from a
small pool, serve them all, and the cost of one notification does not grow with the number of open
streams.

Pub/sub delivers only while subscribed, so a follower that is not yet (or no longer) in step with
the channel reads from the stream instead (`Subscription.live` is False) while the hub keeps the
notifications that arrive meanwhile in its spill; once a read reaches the end of the stream, the
spill continues exactly after it, and the follower is live. The same path, never a silent skip,
serves a follower that joins, one whose client reads too slowly (past `BUFFER_BYTES` waiting, it
drops what is waiting and reads it again from Redis when it can take it), and every follower after
the hub's connection came back (notifications sent meanwhile were lost).

A live follower whose reader waits with nothing pending, and whose client's connection offers a
direct write (gateway/protocol.py's `DirectBody`), holds a `Direct`: then the hub writes the events
that continue it and end no run straight to that client, in the callback that read them, with no
task woken, their bytes made once per encoding, and no `Chunk` made unless another follower needs
one. Everything else (a run's end, a hole, a client whose connection is paused, a gap, a heartbeat,
the end) wakes the reader, which takes it the usual way; its `Direct` is dropped on every wake and
given again when it waits, so a direct write never overtakes what its task sends.

The connections are redis-py's (connect, AUTH, SELECT, TLS, keepalive, Sentinel: all its own),
read, once open, by a protocol of the hub's (`_Replies`): each network read is parsed by hiredis
in C and handled whole in its callback, the notifications of one session in one read as one chunk.
"""

import asyncio
import bisect
import contextlib
import functools
import logging
import operator
import socket
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar, cast

import hiredis
from prometheus_client import Counter
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection

from tokentail.gateway import metrics
from tokentail.gateway.reading.first_delta import DELTA, FirstDeltas, tell_first_deltas
from tokentail.shared.archive import Archive
from tokentail.shared.events import TERMINAL_EVENTS, EventType
from tokentail.shared.logs import RateLimitedLogger
from tokentail.shared.outage import is_outage
from tokentail.shared.redis_clients import sessions_client
from tokentail.shared.settings import Settings
from tokentail.shared.store import (
    ENTRY_FIELDS,
    FIELD_DATA,
    FIELD_TYPE,
    SESSION_GONE,
    Entry,
    SessionStore,
    StoredEvent,
    entry_seq,
    parse_raw_entries,
    stored_event,
)

logger = logging.getLogger(__name__)
outage_log = RateLimitedLogger(logger, every_seconds=30)

T = TypeVar("T")
BUFFER_BYTES = 1_048_576  # what waits for one slow client before it reads from Redis instead
_RUN_COMPLETED = EventType.RUN_COMPLETED.encode()
_TERMINAL = frozenset(event.encode() for event in TERMINAL_EVENTS)
_MESSAGES = frozenset((b"message", b"smessage"))  # a notification, on a channel or a shard channel
_SEQ = operator.itemgetter(0)  # a StoredEvent's seq
Columns = tuple[Sequence[bytes], Sequence[bytes]]  # a chunk's events' types, and their data
_RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0)
# A Redis that vanished without closing the connection is found by TCP keepalive, within about 25 s.
KEEPALIVE = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}


class Chunk:
    """Consecutive events of one session, as one read or notification brought them. Shared by all the
    followers of the session: each encoding is made once, by the first follower that needs it.

    A catch-up read's chunk (`of_entries`) holds the stream's entries as Redis sent them, and a live
    one (`made` by the hub) its notifications made entries of the same shape (`[b"<seq>", [b"type",
    type, b"data", data, b"ts", ts]]`): an encoding that frames them as they are (`encoded`'s
    `from_entries`: tokentail's own SSE and NDJSON) makes no object of each event, and `events` are
    made of them only for a reader that asks."""

    __slots__ = ("_events", "entries", "first", "last", "count", "size", "terminal", "_key", "_value", "_encoded")

    def __init__(self, events: list[StoredEvent]) -> None:
        self._events: list[StoredEvent] | None = events
        self.entries: list[Entry] | None = None
        self.first = events[0].seq
        self.last = events[-1].seq
        self.count = len(events)
        self.size = sum(len(event.data) for event in events)
        self.terminal = any(event.type in _TERMINAL for event in events)  # one of them ends a run
        # Its first encoding (`_key` made `_value`), and any other (by what made it).
        self._key: Callable[..., Any] | None = None
        self._value: Any = None
        self._encoded: dict[Callable[..., Any], Any] | None = None

    @classmethod
    def of_entries(cls, entries: list[Entry], size: int, terminal: bool) -> "Chunk":
        """The events of stream entries as XRANGE sent them (`Entry`), `size` their data's bytes,
        `terminal` whether one of them ends a run."""
        return cls.made(entries, entry_seq(entries[0]), entry_seq(entries[-1]), size, terminal)

    @classmethod
    def made(cls, entries: list[Entry], first: int, last: int, size: int, terminal: bool) -> "Chunk":
        """Of entries whose first and last ids are known (`first`, `last`)."""
        chunk = cls.__new__(cls)
        chunk._events = chunk._key = chunk._value = chunk._encoded = None
        chunk.entries, chunk.first, chunk.last, chunk.count, chunk.size = entries, first, last, len(entries), size
        chunk.terminal = terminal
        return chunk

    @property
    def events(self) -> list[StoredEvent]:
        if (events := self._events) is None:
            assert self.entries is not None
            events = self._events = parse_raw_entries(self.entries)
        return events

    def columns(self) -> Columns:
        """Its events' types and their data, taken in C where it holds entries."""
        if self.entries is not None:
            return columns_of(self.entries)
        events = self.events
        if len(events) == 1:
            return (events[0].type,), (events[0].data,)
        return [event.type for event in events], [event.data for event in events]

    def encoded(
        self, encode: Callable[[list[StoredEvent]], T], from_entries: Callable[[list[Entry]], T] | None = None
    ) -> T:
        """`encode(self.events)`, made once; or `from_entries`, which makes the same of the entries the
        chunk holds, if it holds them."""
        if self._key is encode:
            return self._value  # type: ignore[no-any-return]
        if self._encoded is not None and (done := self._encoded.get(encode)) is not None:
            return done  # type: ignore[no-any-return]
        if from_entries is not None and self.entries is not None:
            value = from_entries(self.entries)
        else:
            value = encode(self.events)
        if self._key is None:  # (most chunks are framed once, for one encoding: no dict)
            self._key, self._value = encode, value
        else:
            if self._encoded is None:
                self._encoded = {}
            self._encoded[encode] = value
        return value

    def up_to(self, seq: int) -> int:
        """How many of its events have ids up to `seq`."""
        if self.last <= seq:
            return self.count
        if self.entries is not None:
            return bisect.bisect_right(self.entries, seq, key=entry_seq)
        return bisect.bisect_right(self.events, seq, key=_SEQ)

    def after(self, seq: int) -> "Chunk":
        return Chunk([event for event in self.events if event.seq > seq])


def columns_of(entries: list[Entry]) -> Columns:
    """The types and the data of the events of these entries."""
    if len(entries) == 1:  # a live append, mostly
        fields = entries[0][1]
        return (fields[1],), (fields[3],)
    fields_of = list(map(ENTRY_FIELDS, entries))
    return list(map(FIELD_TYPE, fields_of)), list(map(FIELD_DATA, fields_of))


class Writer(Protocol):
    """A client's response, to which the hub may write (gateway/protocol.py's `DirectBody`)."""

    def write(self, body: bytes) -> bool:
        """Write `body` as the next piece of the response, or say it could not (nothing written)."""


class Direct:
    """How the hub writes live events to the waiting followers of one encoding and transport, from
    the callback that read them, with no task woken (see the module's docstring); each follower's
    own is its `Writer`. One for all of them (`of`): an open stream keeps nothing more for it.

    `frames`: the bytes of live events (their entries) in the encoding, the same for every client of
    it, so made once for all; `sent`: the count of events sent on the transport (`metrics.EVENTS_SENT`),
    which the hub adds to once per read; `marks_deltas`: its readers tell of each run's first delta
    they write (first_delta.py), which the hub then does for them, once per chunk."""

    __slots__ = ("frames", "sent", "marks_deltas")
    _made: ClassVar[dict[tuple[Callable[[list[Entry]], bytes], Counter, bool], "Direct"]] = {}

    def __init__(self, frames: Callable[[list[Entry]], bytes], sent: Counter, marks_deltas: bool) -> None:
        self.frames = frames
        self.sent = sent
        self.marks_deltas = marks_deltas

    @classmethod
    def of(cls, frames: Callable[[list[Entry]], bytes], sent: Counter, marks_deltas: bool) -> "Direct":
        key = (frames, sent, marks_deltas)
        if (made := cls._made.get(key)) is None:
            made = cls._made[key] = cls(frames, sent, marks_deltas)
        return made


class Subscription:
    """One follower's place in its session's channel: what waits for it, and whether it is live."""

    __slots__ = (
        "channel", "pending", "pending_bytes", "queued", "written", "live", "spill", "spill_bytes", "dirty", "idle",
        "closed", "last_tick", "direct", "writer", "_waiter",
    )  # fmt: skip

    def __init__(self, channel: "_Channel", tick: int) -> None:
        self.channel = channel
        self.pending: list[Chunk] = []  # live chunks the follower has yet to take
        self.pending_bytes = 0
        self.queued = 0  # the last seq put in `pending` or written straight to the client (while live)
        self.written = 0  # the last seq written straight to the client (through `direct`)
        self.live = False  # False: catching up by reads; notifications go to the spill
        self.spill: list[Chunk] = []
        self.spill_bytes = 0
        self.dirty = False  # the spill lost something: read again before going live
        self.idle = False  # nothing for a heartbeat: the follower pings (and checks on its session)
        self.closed = False
        self.last_tick = tick
        self.direct: Direct | None = None  # while its reader waits, live: how the hub writes to its client...
        self.writer: Writer | None = None  # ...through this
        self._waiter: asyncio.Future[None] | None = None

    @property
    def ready(self) -> bool:
        """The channel is subscribed: from now on, every event appended is also notified."""
        return self.channel.ready

    async def wait(self, direct: Direct | None = None, writer: Writer | None = None) -> None:
        """Until there is something to do: chunks, a catch-up to make, a heartbeat, or the end.
        Meanwhile, if live, the hub writes what it can to `writer`, as `direct` says (`written` says
        up to where)."""
        if self.pending or self.idle or self.closed or (not self.live and self.ready):
            return
        self.direct, self.writer = (direct, writer) if self.live and writer is not None else (None, None)
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = self.direct = self.writer = None

    def take(self) -> list[Chunk]:
        chunks, self.pending, self.pending_bytes = self.pending, [], 0
        return chunks

    def begin_read(self) -> None:
        """A catch-up read is about to be sent: notifications from now on follow what it returns."""
        self.live = False
        self.spill, self.spill_bytes, self.dirty = [], 0, False

    def join(self, after: int) -> bool:
        """After a read that reached the stream's end at `after`: go live if the spill continues it."""
        if self.dirty or self.closed:
            return False
        tail = [chunk if chunk.first > after else chunk.after(after) for chunk in self.spill if chunk.last > after]
        if tail and tail[0].first != after + 1:
            return False
        self.spill, self.spill_bytes = [], 0
        self.pending, self.pending_bytes = tail, sum(chunk.size for chunk in tail)
        self.queued = tail[-1].last if tail else after
        self.live = True
        return True

    def offer(self, chunk: Chunk, tick: int) -> None:
        """A chunk of its session's (one the hub did not write to its client: `StreamHub._deliver`):
        left for the follower to take, kept in the spill, or dropped for a read."""
        if self.closed:
            return
        if not self.live:
            if not self.dirty:
                self.spill.append(chunk)
                self.spill_bytes += chunk.size
                if self.spill_bytes > BUFFER_BYTES:
                    self.spill, self.spill_bytes, self.dirty = [], 0, True
            return
        if chunk.last <= self.queued:
            return
        if chunk.first != self.queued + 1 or self.pending_bytes + chunk.size > BUFFER_BYTES:
            metrics.HUB_CATCH_UPS.labels("behind" if chunk.first == self.queued + 1 else "hole").inc()
            self.fall_behind()
            return
        self.pending.append(chunk)  # for its reader: a run's end, a client not taking more for now...
        self.pending_bytes += chunk.size
        self.queued = chunk.last
        self.last_tick = tick
        self._wake()

    def fall_behind(self) -> None:
        """Drop what waits: the follower reads it again from Redis, from what it last took."""
        self.live = False
        self.pending, self.pending_bytes = [], 0
        self.spill, self.spill_bytes, self.dirty = [], 0, True
        self._wake()

    def ping(self) -> None:
        self.idle = True
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self.direct = None  # its reader has something to do: the hub writes nothing past it meanwhile
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Channel:
    __slots__ = ("session_id", "name", "subscriptions", "ready", "held", "link", "delta_head")

    def __init__(self, session_id: str, name: bytes) -> None:
        self.session_id = session_id
        self.name = name
        self.subscriptions: set[Subscription] = set()
        self.ready = False
        self.held: list[StoredEvent] | None = None  # events after a `run.completed` whose output is fetched
        self.link: _Link | None = None
        self.delta_head = b"\0"  # the run whose first delta the hub told of last, written to a follower


class _Link:
    """One pub/sub connection of the hub: to the Redis, or to one primary of a Redis Cluster (whose
    sessions notify on their shard: SSUBSCRIBE)."""

    __slots__ = ("address", "new_connection", "connection", "channels", "awaiting", "task")

    def __init__(self, address: str, new_connection: Callable[[], AbstractConnection]) -> None:
        self.address = address
        self.new_connection = new_connection
        self.connection: AbstractConnection | None = None
        self.channels: set[_Channel] = set()
        self.awaiting: deque[_Channel] = deque()  # subscribe acknowledgements due, in the order asked
        self.task: asyncio.Task[None] | None = None


class _Replies(asyncio.Protocol):
    """Reads one of the hub's connections once redis-py has opened it: each network read is parsed by
    hiredis, in C, and handled whole in this callback, with no task woken and nothing awaited per
    message. `lost` fails when the connection ends (or brought what is not Redis's protocol)."""

    def __init__(self, pubsub: "_PubSub", link: _Link, transport: asyncio.Transport) -> None:
        self._pubsub = pubsub
        self._link = link
        self._transport = transport
        self._parser = hiredis.Reader()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            self._pubsub.on_replies(self._link, self._parser)
        except Exception as exc:  # not Redis's protocol, or the hub's own fault: read on a new connection
            self._end(exc)
            self._transport.abort()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or ConnectionError("Redis closed the stream hub's connection"))

    def _end(self, exc: BaseException) -> None:
        if not self.lost.done():  # (cancelled when the hub closes: its listener no longer waits)
            self.lost.set_exception(exc)


class StreamHub:
    """The live reads of one gateway process: `subscribe` a follower, `unsubscribe` it when done."""

    def __init__(self, settings: Settings, read_connections: int, archive: "Archive | None" = None) -> None:
        # Catch-up reads and positions: a small pool. No socket timeout, on purpose: with one,
        # redis-py wraps each command's send in `asyncio.wait_for`, which on Python 3.11 swallows a
        # cancellation that lands as the send completes (python/cpython#86296), and a feed whose
        # client left would go on holding its stream slot. A Redis that is only slow is waited for.
        self._redis = sessions_client(
            settings, read_connections, wait=None, socket_keepalive=True, socket_keepalive_options=KEEPALIVE
        )
        self.store = SessionStore(self._redis, settings, archive)
        self.first_deltas = FirstDeltas(self.store)  # the runs' first deltas its followers write
        self._heartbeat = settings.sse_heartbeat_seconds
        self._channels: dict[bytes, _Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick = 0
        self._stopped = False
        self._sent: dict[Counter, int] = {}  # events written straight to clients, by transport, not yet counted
        self._pubsub = _PubSub(self, self._redis)

    async def start(self) -> None:
        await self._pubsub.start()
        self._spawn(self._beat())

    def subscribe(self, session_id: str) -> Subscription:
        name = self.store.keys.session(session_id).events.encode()
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(session_id, name)
            metrics.HUB_CHANNELS.inc()
            self._pubsub.route(channel)
        subscription = Subscription(channel, self._tick)
        if self._stopped:
            subscription.closed = True
        channel.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.closed = True
        channel = subscription.channel
        channel.subscriptions.discard(subscription)
        if not channel.subscriptions and self._channels.get(channel.name) is channel:
            del self._channels[channel.name]
            metrics.HUB_CHANNELS.dec()
            self._pubsub.unroute(channel)

    @property
    def stopping(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """The gateway is stopping: every follower ends its stream now (its client comes back elsewhere)."""
        self._stopped = True
        for subscription in self._subscriptions():
            subscription.close()

    async def aclose(self) -> None:
        self.stop()
        tasks = [*self._tasks, *self._pubsub.tasks()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._redis.aclose()

    # -- notifications to chunks ---------------------------------------------------------------

    def _notified(self, channel: _Channel, payloads: list[bytes]) -> None:
        """A session's notifications that came together, in order: its events (`<seq> <ts> <type>
        <data>`, made entries as a read's are, one chunk of them), or its end."""
        entries: list[Entry] = []
        size, terminal, delta = 0, False, None
        for payload in payloads:
            if payload == SESSION_GONE:
                if entries:
                    self._deliver(channel, entries, size, terminal, delta)
                    entries, size, terminal, delta = [], 0, False, None
                for subscription in channel.subscriptions:
                    subscription.ping()  # it checks on its session, finds it gone, and ends now
                continue
            seq, ts, type_, data = payload.split(b" ", 3)
            if channel.held is None and type_ != _RUN_COMPLETED:
                entries.append([seq, [b"type", type_, b"data", data, b"ts", ts]])
                size += len(data)
                if type_ == DELTA:
                    delta = data
                elif type_ in _TERMINAL:
                    terminal = True
                continue
            if entries:
                self._deliver(channel, entries, size, terminal, delta)
                entries, size, terminal, delta = [], 0, False, None
            event = stored_event((int(seq), type_, data, int(ts)))
            if channel.held is not None:
                channel.held.append(event)
            else:
                # The stream keeps a completed run's output in its record: add it back (one read per
                # gateway), holding the session's later events until it is done, so order is kept.
                channel.held = [event]
                self._spawn(self._complete(channel))
        if entries:
            self._deliver(channel, entries, size, terminal, delta)

    async def _complete(self, channel: _Channel) -> None:
        try:
            while channel.held:
                events, channel.held = channel.held, []
                chunk = Chunk(await self.store.with_outputs(channel.session_id, events))
                for subscription in channel.subscriptions:  # (a run's end: each follower's reader takes it)
                    subscription.offer(chunk, self._tick)
        except Exception as exc:
            if not is_outage(exc):
                logger.exception("could not add a completed run's output")
            for subscription in channel.subscriptions:
                subscription.fall_behind()  # each reads it from Redis when it can
        finally:
            channel.held = None

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _deliver(self, channel: _Channel, entries: list[Entry], size: int, terminal: bool, delta: bytes | None) -> None:
        """Live events of `channel`'s session (as entries), to each follower: written straight to the
        client of each that holds a `Direct` and is owed exactly these (their bytes made once per
        encoding), else as one `Chunk` (made once, if any follower needs it). `size`: their data's
        bytes; `terminal`: one of them ends a run; `delta`: the data of the last text delta, if any."""
        first = int(entries[0][0])
        last = first if len(entries) == 1 else int(entries[-1][0])
        tick, sent, count = self._tick, self._sent, len(entries)
        chunk, framer, body, bodies, marks = None, None, b"", None, False
        for subscription in channel.subscriptions:
            direct = subscription.direct
            if direct is not None and not terminal and subscription.queued == first - 1:
                # (Holding a `Direct`, it is live, open, and has nothing pending: see `wait` and `_wake`.)
                if (frames := direct.frames) is not framer:
                    if framer is not None:  # followers in another encoding too: each encoding's, once
                        bodies = bodies or {framer: body}
                        body = bodies.get(frames) or bodies.setdefault(frames, frames(entries))
                    else:
                        body = frames(entries)
                    framer = frames
                if subscription.writer.write(body):  # type: ignore[union-attr]  # (held with `direct`)
                    subscription.queued = subscription.written = last
                    subscription.last_tick = tick
                    counter = direct.sent
                    sent[counter] = sent.get(counter, 0) + count
                    marks = marks or direct.marks_deltas
                    continue
            if chunk is None:
                chunk = Chunk.made(entries, first, last, size, terminal)
            subscription.offer(chunk, tick)
        # Written to a client by the hub: it tells of a run's first delta, as a feed would (unless all
        # these deltas are of the run it told of last: the last one says).
        if marks and delta is not None and not delta.startswith(channel.delta_head):
            types, datas = columns_of(entries)
            channel.delta_head = tell_first_deltas(
                self.first_deltas, channel.session_id, channel.delta_head, types, datas
            )

    def _count_sent(self) -> None:
        if self._sent:
            for counter, count in self._sent.items():
                counter.inc(count)
            self._sent.clear()

    # -- heartbeats ----------------------------------------------------------------------------

    async def _beat(self) -> None:
        # Half-heartbeat ticks: a follower with nothing sent for two ticks pings. One pass over the
        # followers per tick, however many there are, instead of a timer per follower.
        while True:
            await asyncio.sleep(self._heartbeat / 2)
            self.tick()

    def tick(self) -> None:
        """Half a heartbeat passed: each follower sent nothing for two ticks (by the hub's writes or
        its own) pings."""
        self._tick += 1
        for subscription in self._subscriptions():
            if self._tick - subscription.last_tick >= 2:
                subscription.last_tick = self._tick
                subscription.ping()

    def _subscriptions(self) -> Iterable[Subscription]:
        return [s for channel in list(self._channels.values()) for s in channel.subscriptions]


class _PubSub:
    """The hub's notifications connections: one to the Redis, or one per primary of a Redis Cluster
    (whose sessions notify on their shard: SSUBSCRIBE), each subscribed to the channels it hears."""

    def __init__(self, hub: StreamHub, redis: Redis | RedisCluster) -> None:
        self._hub = hub
        self._redis = redis
        self._channels = hub._channels  # the hub's, the same dict
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._subscribe, self._unsubscribe = (
            (b"SSUBSCRIBE", b"SUNSUBSCRIBE") if self._cluster else (b"SUBSCRIBE", b"UNSUBSCRIBE")
        )
        self.links: dict[str, _Link] = {}

    async def start(self) -> None:
        if self._cluster is not None:
            await self._cluster.initialize()  # the slot map, to route each session to its shard

    def tasks(self) -> list[asyncio.Task[None]]:
        return [link.task for link in self.links.values() if link.task is not None]

    def route(self, channel: _Channel) -> None:
        """Subscribe the channel on the connection that hears it: the one connection, or the one to
        the primary that holds its slot in a cluster."""
        if self._cluster is None:
            address, new_connection = "", self._connection_to_redis
        else:
            node = self._cluster.get_node_from_key(channel.name)
            address, new_connection = node.name, functools.partial(node.connection_class, **node.connection_kwargs)
        link = self.links.get(address)
        if link is None:
            link = self.links[address] = _Link(address, new_connection)
            link.task = asyncio.create_task(self._listen(link))
        channel.link = link
        link.channels.add(channel)
        self._send(link, self._subscribe, [channel])

    def unroute(self, channel: _Channel) -> None:
        if channel.link is not None:
            channel.link.channels.discard(channel)
            self._send(channel.link, self._unsubscribe, [channel])

    def _connection_to_redis(self) -> AbstractConnection:
        pool = cast(Redis, self._redis).connection_pool
        connection: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        return connection

    async def _reroute(self, channels: Iterable[_Channel]) -> None:
        """The cluster moved these channels' slots, or lost a primary: route them again, by a fresh
        slot map. Their followers read what they missed once subscribed again."""
        assert self._cluster is not None
        with contextlib.suppress(Exception):  # an unreachable cluster: the next failure tries again
            await self._cluster.nodes_manager.initialize()
        for channel in list(channels):
            if self._channels.get(channel.name) is channel:
                if channel.link is not None:
                    channel.link.channels.discard(channel)
                self.route(channel)

    async def _listen(self, link: _Link) -> None:
        failures = 0
        while True:
            if failures and self._forgot_idle(link):
                return
            connection = link.new_connection()
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
                replies = self._read(link, connection)
                link.connection, failures = connection, 0
                link.awaiting.clear()
                self._send(link, self._subscribe, list(link.channels))
                await replies.lost
            except Exception as exc:
                if not is_outage(exc):
                    logger.exception("the stream hub's connection failed; reconnecting")
                else:
                    outage_log.warning("the stream hub lost Redis (%s); reconnecting", exc)
                metrics.HUB_RECONNECTS.inc()
            finally:
                link.connection = None
                await connection.disconnect(nowait=True)
            if self._cluster is not None and failures:
                # Still failing after a retry: the primary may have gone (failover): look again.
                await self._reroute(link.channels)
                if self._forgot_idle(link):
                    return
            await asyncio.sleep(_RECONNECT_SECONDS[min(failures, len(_RECONNECT_SECONDS) - 1)])
            failures += 1

    def _read(self, link: _Link, connection: AbstractConnection) -> _Replies:
        """From now on, what comes on `connection` (opened by redis-py, its handshake done, nothing
        asked since) is read by the hub's own protocol instead of redis-py's stream reader."""
        assert connection._writer is not None
        transport = cast(asyncio.Transport, connection._writer.transport)
        replies = _Replies(self, link, transport)
        transport.set_protocol(replies)
        return replies

    def _forgot_idle(self, link: _Link) -> bool:
        """In a cluster, a failing link whose channels all left (moved to other primaries, or their
        followers ended) is dropped, not tried again: a dead node is not reconnected to for ever."""
        if self._cluster is None or link.channels:
            return False
        if self.links.get(link.address) is link:
            del self.links[link.address]
        return True

    def _send(self, link: _Link, command: bytes, channels: list[_Channel]) -> None:
        # Without a connection there is nothing to send: the next connection subscribes to every
        # channel there is then. A failed send breaks the connection, which the listener sees.
        # In a cluster, one channel per command: a command's channels must share a slot.
        connection = link.connection
        if connection is None or not channels:
            return
        if command == self._subscribe:
            link.awaiting.extend(channels)
        per_command = 1 if self._cluster is not None else 1000
        names = [channel.name for channel in channels]
        for start in range(0, len(names), per_command):
            connection._writer.writelines(connection.pack_command(command, *names[start : start + per_command]))  # type: ignore[union-attr]

    def on_replies(self, link: _Link, parser: hiredis.Reader) -> None:
        """Every reply one network read of `link`'s connection completed, in order. The notifications
        of one session that come one after the other (as an append's do) are taken together, as one
        chunk: one write to each client that follows it directly. What the hub wrote is counted once."""
        channels, notified = self._channels, self._hub._notified
        channel: _Channel | None = None
        payloads: list[bytes] = []
        while (reply := parser.gets()) is not False:
            if reply.__class__ is list and reply[0] in _MESSAGES:
                if (of := channels.get(reply[1])) is not channel:
                    if channel is not None and payloads:
                        notified(channel, payloads)
                    channel, payloads = of, []
                payloads.append(reply[2])
                continue
            if channel is not None and payloads:
                notified(channel, payloads)
            channel, payloads = None, []
            if isinstance(reply, hiredis.ReplyError):
                self._refused(link, reply)
            else:
                self._on_reply(link, reply)
        if channel is not None and payloads:
            notified(channel, payloads)
        self._hub._count_sent()

    def _refused(self, link: _Link, error: hiredis.ReplyError) -> None:
        """An error reply: on a cluster, a MOVED for a channel whose slot this node no longer holds."""
        if self._cluster is None or not link.awaiting:
            raise error  # not one the hub asks for: a new connection subscribes again
        channel = link.awaiting.popleft()
        logger.info("the stream hub moves a channel (%s)", error)
        self._hub._spawn(self._reroute([channel]))

    def _on_reply(self, link: _Link, reply: list[bytes]) -> None:
        kind = reply[0]
        if kind == b"subscribe" or kind == b"ssubscribe":
            channel = link.awaiting.popleft()
            if channel.ready:
                # Subscribed again (the connection came back, the slot moved): what was sent
                # meanwhile was lost.
                for subscription in channel.subscriptions:
                    metrics.HUB_CATCH_UPS.labels("reconnect").inc()
                    subscription.fall_behind()
            else:
                channel.ready = True
                for subscription in channel.subscriptions:
                    subscription._wake()
        elif kind == b"sunsubscribe":
            moved = self._channels.get(reply[1])
            if moved is not None and moved.link is link:
                # Not asked for: the cluster moved the channel's slot to another primary.
                self._hub._spawn(self._reroute([moved]))
