"""One client's view of a session stream: where to start, then catch-up and live tail, with gaps.

Both the SSE and the WebSocket endpoint read through this; only the framing differs. A feed reads
from Redis (XRANGE) only to catch up; live, it takes the chunks the gateway's hub hands it
(gateway/live/hub.py), shared with every other follower of the session. What one read may bring is
bounded by bytes, not only by count: a feed replaying a long session holds about
`READ_BUDGET_BYTES` of it at a time, however large its events are.

A feed given a way to write to its client (`write_directly`: an encoding whose live frames are the
same for every client, on a connection that offers it) lets the hub write the live chunks that need
nothing of it straight to the client while it waits, live, with nothing pending: its task then runs
only for what does (catch-up, a gap, a run's end, a heartbeat, a client that takes no more for now).

What is told of a feed besides its events (metrics, its connection's span, each run's first delta)
is its observer's (feed_observer.py), which it calls at a few points.
"""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field

from tokentail.gateway import metrics
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.live.subscription import Direct, Subscription, Writer
from tokentail.gateway.reading.feed_observer import FeedObserver
from tokentail.gateway.reading.snapshot import SNAPSHOT_BEHIND, Snapshot, read_snapshots
from tokentail.shared.connections.outage import is_outage
from tokentail.shared.store.reads import ENTRY_FIELDS, FIELD_DATA, FIELD_TYPE, Entry, SessionStore, StoredEvent
from tokentail.shared.vocabulary.errors import InvalidLastEventId, SessionNotFound
from tokentail.shared.vocabulary.events import TERMINAL_EVENTS, Gap

_TERMINAL = frozenset(event.encode() for event in TERMINAL_EVENTS)  # (types: a read's, as columns)
REDIS_RETRY_SECONDS = 0.5
READ_BUDGET_BYTES = 262_144
FIRST_READ_COUNT = 16  # before a feed knows how large this session's events are


@dataclass(frozen=True, slots=True)
class Start:
    after: int  # the last id the client has (or is told to skip to, after a gap)
    gap: Gap | None
    idle: bool  # nothing to send and no run queued or running
    replay_until: int = 0  # a resuming client: the stream's last id when it came back (else 0)
    active: bool = False  # a run was queued or running
    snapshot_until: int = 0  # a client far behind that asked for it: compacted up to here first (else 0)


def parse_last_event_id(value: str | None) -> int:
    """A client's `Last-Event-ID` (or `?last_event_id=`); none means from the start."""
    if value is None or value == "":
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise InvalidLastEventId(value)
    return int(value)


async def start_position(store: SessionStore, session_id: str, after: int, snapshot: bool = False) -> Start:
    """Where a client asking to resume after `after` starts, and what it must be told first.
    `snapshot`: the client takes a compacted catch-up (gateway/reading/snapshot.py) if far behind."""
    last_seq, active, first = await store.stream_start(session_id, after)
    gap = None
    if after > last_seq:
        # Ahead of the stream: not an id this session gave out. Say so, and replay what there is.
        gap = Gap(reason="unknown_id", first_available=first or last_seq + 1)
    elif after < last_seq:
        if first is None:
            gap = Gap(reason="expired", first_available=last_seq + 1)
        elif first > after + 1:
            gap = Gap(reason="trimmed", first_available=first)
    if gap is not None:
        metrics.GAPS.labels(gap.reason).inc()
        after = gap.first_available - 1
    idle = not active and after >= last_seq
    far_behind = after == 0 or last_seq - after > SNAPSHOT_BEHIND
    return Start(
        after,
        gap,
        idle,
        replay_until=last_seq if after > 0 else 0,
        active=active,
        snapshot_until=last_seq if snapshot and far_behind and last_seq > after else 0,
    )


@dataclass
class Batch:
    chunks: list[Chunk] = field(default_factory=list)  # empty: a heartbeat is due
    gap: Gap | None = None  # announced before the events
    snapshot: Snapshot | None = None  # a compacted catch-up, sent as one event (no chunks then)

    @property
    def events(self) -> list[StoredEvent]:
        return [event for chunk in self.chunks for event in chunk.events]


class EventFeed:
    __slots__ = (
        "_store",
        "_hub",
        "_session_id",
        "after",
        "_batch",
        "_count",
        "_until_idle",
        "_subscription",
        "_stopped",
        "_run_going",
        "_snapshot_until",
        "_start",
        "_observer",
        "_ending",
        "_direct",
        "_writer",
    )  # fmt: skip  (slots: one of each open stream, kept as small as can be)

    def __init__(
        self,
        hub: StreamHub,
        session_id: str,
        start: Start,
        batch: int,
        until_idle: bool,
        transport: str,
        writes_deltas: bool = True,
    ) -> None:
        """`writes_deltas`: False for a feed whose reader only waits for a run to end, which shows a
        client nothing as it goes (it does not count a run's first delta: first_delta.py)."""
        self._store = hub.store
        self._hub = hub
        self._session_id = session_id
        self.after = start.after
        self._batch = batch
        self._count = min(batch, FIRST_READ_COUNT)  # events per read: as many as fit READ_BUDGET_BYTES, up to batch
        self._until_idle = until_idle  # end once nothing is left and nothing is coming (SSE)
        self._subscription: Subscription | None = None
        self._stopped = False
        # The run `start` saw queued or running has not ended yet as far as this feed has read: no need
        # to ask Redis whether the stream is finished. Only until the first catch-up is over (the
        # check a stream opening would otherwise pay); after that, `_finished` always asks.
        self._run_going = start.active
        self._snapshot_until = start.snapshot_until
        self._start: Start | None = start  # until the feed opens: a stream keeps nothing it no longer needs
        first_deltas = hub.first_deltas if writes_deltas else None
        self._observer = FeedObserver(self._store, session_id, transport, start.replay_until, first_deltas)
        self._ending: str | None = None  # how it ends, when its reader knows better than the feed
        self._direct: Direct | None = None  # how the hub may write live events to its client...
        self._writer: Writer | None = None  # ...through this (else None)

    def write_directly(self, frames: Callable[[list[Entry]], bytes], writer: Writer) -> None:
        """Let the hub write the live events that need nothing of this feed straight to its client,
        while it waits: `frames` makes their bytes of their entries (the same for every client of its
        encoding), `writer` writes them, or says it could not. Not with traces on: each chunk a feed
        sends goes in its connection's span."""
        if not self._observer.traced:
            self._direct = Direct.of(frames, self._observer.sent_counter, self._observer.marks_deltas)
            self._writer = writer

    def stop(self) -> None:
        """The client left: end the feed now, whatever it waits for."""
        self._stopped = True
        self._ending = self._ending or "client_left"
        if self._subscription is not None:
            self._subscription.close()

    def ends(self, how: str) -> None:
        """What its reader says of the stream's end, if it ends it (`finished`: what it was about is over)."""
        self._ending = how

    async def __aiter__(self) -> AsyncGenerator[Batch]:
        assert self._start is not None  # (a feed is read once)
        self._observer.opened(self._start.after, self._start.gap)
        self._start = None
        how = "error"
        try:
            while not self._stopped:
                subscription = self._subscription = self._hub.subscribe(self._session_id)
                try:
                    async for batch in self._events(subscription):
                        yield batch
                        del batch  # see _events
                    how = self._ended()
                    return
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    if subscription.closed:
                        how = self._ended()
                        return
                    # Redis is restarting, failing over or busy: keep the client's connection (idle
                    # batches become heartbeats) and carry on from the last id sent once it answers.
                    yield Batch()
                    await asyncio.sleep(REDIS_RETRY_SECONDS)
                finally:
                    self._hub.unsubscribe(subscription)
            how = self._ended()
        except GeneratorExit:  # its reader had what it wanted (a UI protocol's run ended, a wait is over)
            how = self._ending or "closed"
            raise
        except asyncio.CancelledError:  # its reader was cancelled: the client left, or resumed on its socket
            how = self._ending or "cancelled"
            raise
        finally:
            self._observer.closed(how)

    async def _events(self, subscription: Subscription) -> AsyncIterator[Batch]:
        if self._snapshot_until > self.after:
            # Subscribed first, as for any catch-up: what comes meanwhile waits in the spill.
            snapshots = read_snapshots(
                self._store, self._session_id, self.after, self._snapshot_until, self._batch, READ_BUDGET_BYTES
            )
            async for snapshot in snapshots:
                self.after = snapshot.up_to
                self._observer.snapshot(snapshot)
                yield Batch(snapshot=snapshot)
                del snapshot  # see below
            self._snapshot_until = 0
        while not subscription.closed:
            if subscription.pending:  # live: the hub's chunks, as they are
                chunks = subscription.take()
                self.after = chunks[-1].last
                self._observer.sent(chunks)
                ended = any(chunk.terminal for chunk in chunks)
                yield Batch(chunks)
                # An open stream mostly waits: what it sent last is not kept meanwhile (its events and
                # their frames, a snapshot of up to READ_BUDGET_BYTES), nor by the loops above this one.
                del chunks
                if ended and await self._finished():
                    return
            elif not subscription.live and subscription.ready:
                async for batch in self._catch_up(subscription):
                    yield batch
                    del batch
                finished = not self._run_going and await self._finished()
                self._run_going = False
                if finished:
                    return
            elif subscription.idle:
                subscription.idle = False
                yield Batch()
                if await self._finished():
                    return
            else:
                await subscription.wait(self._direct, self._writer)
                self.after = max(self.after, subscription.written)  # what the hub wrote meanwhile

    async def _catch_up(self, subscription: Subscription) -> AsyncIterator[Batch]:
        """Read from Redis (XRANGE, in batches) until the end of the stream, then go live. While one
        batch is framed and goes to the client, the next is read: Redis and the gateway work at the
        same time (`_on_its_way`)."""
        subscription.begin_read()
        entries, count = await self._store.read_entries(self._session_id, self.after, self._count), self._count
        first = True  # the first batch goes at once: its client waits for it, and it is small
        while not subscription.closed:
            batch = self._deliver(entries) if entries else None
            if len(entries) < count and subscription.join(self.after):
                if batch is not None:
                    yield batch
                return
            subscription.begin_read()  # the spill now follows this read
            reading = asyncio.ensure_future(
                self._store.read_entries(self._session_id, self.after, count := self._count)
            )
            try:
                if batch is not None:
                    if not first:
                        await _on_its_way()
                    first = False
                    yield batch
                entries = await reading
            finally:
                reading.cancel()  # the client left while the read was on its way

    def _deliver(self, entries: list[Entry]) -> Batch:
        """A read's entries, as Redis sent them, made a batch. What the feed needs of them (their
        types, the size of their data) is taken in C, as columns: no object is made of each event
        (the encoding frames the entries as they are, or asks the chunk for its events)."""
        fields = list(map(ENTRY_FIELDS, entries))
        types, datas = list(map(FIELD_TYPE, fields)), list(map(FIELD_DATA, fields))
        size = sum(map(len, datas))
        terminal = not _TERMINAL.isdisjoint(types)
        chunk = Chunk.of_entries(entries, size, terminal)
        # A reader slower than the stream's trimming finds its next id gone: say so, never skip silently.
        gap = None
        if chunk.first > self.after + 1:
            gap = Gap(reason="trimmed", first_available=chunk.first)
            self._observer.gap(gap)
        self.after = chunk.last
        if terminal:
            self._run_going = False
        # The next read: as many events of this size as fit the budget, growing by doubling at most.
        fit = max(1, len(entries) * READ_BUDGET_BYTES // max(1, size))
        self._count = min(self._batch, 2 * self._count, fit)
        chunks = [chunk]
        self._observer.sent(chunks, [(types, datas)])
        return Batch(chunks, gap)

    def _ended(self) -> str:
        """How the stream ended, when the feed ended it (its reader may have said: `ends`)."""
        if self._ending is not None:
            return self._ending
        if self._hub.stopping:
            return "shutdown"
        return "finished"

    async def _finished(self) -> bool:
        """The session is gone, or (for a feed that ends when idle) nothing is left or coming."""
        try:
            last_seq, active = await self._store.stream_position(self._session_id)
        except SessionNotFound:  # deleted or expired while we streamed
            self._ending = self._ending or "session_gone"
            return True
        return self._until_idle and not active and last_seq <= self.after


async def _on_its_way() -> None:
    """Two turns of the event loop, for the read just asked for: its task's first step hands its
    command to the joiner (shared/connections/round_trips.py), whose task's first step writes it. A batch yielded
    at once would be framed and sent first (nothing in between gives the loop a turn), and Redis
    would start on the next page only once this one was out."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)
