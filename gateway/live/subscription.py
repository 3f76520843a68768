"""One follower's place in its session's channel (`Subscription`): what waits for it, whether it is
live, and, while its reader waits with nothing pending, how the hub writes to its client straight
(`Direct`, through its `Writer`). gateway/live/hub.py says how the hub feeds them."""

import asyncio
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Protocol

from prometheus_client import Counter
from redis.asyncio.connection import AbstractConnection

from tokentail.gateway import metrics
from tokentail.gateway.live.chunk import Chunk
from tokentail.shared.store.reads import Entry, StoredEvent

BUFFER_BYTES = 1_048_576  # what waits for one slow client before it reads from Redis instead


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

    def __init__(self, channel: "Channel", tick: int) -> None:
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

    async def told(self) -> None:
        """For a follower of the channel's notifications alone, not of a session's events (an ACP
        connection's outbox: its entries are read apart, and its channel's only message is a ping,
        `SESSION_GONE`): the first wait lasts until the channel is subscribed, each later one until a
        ping, a heartbeat or the end."""
        await self.wait()
        self.live, self.idle = True, False  # (waiting again waits for the next)

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


class Link:
    """One pub/sub connection of the hub (gateway/live/pubsub.py reads it), here beside the channels it
    hears: to the Redis, or to one primary of a Redis Cluster (whose
    sessions notify on their shard: SSUBSCRIBE)."""

    __slots__ = ("address", "new_connection", "connection", "channels", "awaiting", "task", "outbox")

    def __init__(self, address: str, new_connection: Callable[[], AbstractConnection]) -> None:
        self.address = address
        self.new_connection = new_connection
        self.connection: AbstractConnection | None = None
        self.channels: set[Channel] = set()
        self.awaiting: deque[Channel] = deque()  # subscribe acknowledgements due, in the order asked
        self.task: asyncio.Task[None] | None = None
        self.outbox: list[bytes] = []  # (un)subscriptions asked in this loop step: one write at its end


class Channel:
    """A session followed in this process: its followers, and how the hub hears it."""

    __slots__ = ("session_id", "name", "subscriptions", "ready", "held", "link", "delta_head")

    def __init__(self, session_id: str, name: bytes) -> None:
        self.session_id = session_id
        self.name = name
        self.subscriptions: set[Subscription] = set()
        self.ready = False
        self.held: list[StoredEvent] | None = None  # events after a `run.completed` whose output is fetched
        self.link: Link | None = None
        self.delta_head = b"\0"  # the run whose first delta the hub told of last, written to a follower
