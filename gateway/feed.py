"""One client's view of a session stream: where to start, then catch-up and live tail, with gaps.

Both the SSE and the WebSocket endpoint read through this; only the framing differs. Its reads go
through `StreamTail`'s client, on which a cancellation is never lost (see gateway/tail.py). What
one read may bring is bounded by bytes, not only by count: a feed replaying a long session holds
about `READ_BUDGET_BYTES` of it at a time, however large its events are.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway import metrics
from gateway.shutdown import StreamShutdown
from gateway.tail import StreamTail
from shared.errors import SessionNotFound
from shared.events import TERMINAL_EVENTS, Gap
from shared.outage import is_outage
from shared.store import SessionStore, StoredEvent

_TERMINAL = frozenset(event.encode() for event in TERMINAL_EVENTS)
REDIS_RETRY_SECONDS = 0.5
READ_BUDGET_BYTES = 262_144
FIRST_READ_COUNT = 16  # before a feed knows how large this session's events are


@dataclass(frozen=True)
class Start:
    after: int  # the last id the client has (or is told to skip to, after a gap)
    gap: Gap | None
    idle: bool  # nothing to send and no run queued or running
    replay_until: int = 0  # a resuming client: the stream's last id when it came back (else 0)


async def start_position(store: SessionStore, session_id: str, after: int) -> Start:
    """Where a client asking to resume after `after` starts, and what it must be told first."""
    last_seq, active = await store.stream_position(session_id)
    gap = None
    if after > last_seq:
        # Ahead of the stream: not an id this session gave out. Say so, and replay what there is.
        first = await store.first_available(session_id)
        gap = Gap(reason="unknown_id", first_available=first or last_seq + 1)
    elif after < last_seq:
        first = await store.first_available(session_id)
        if first is None:
            gap = Gap(reason="expired", first_available=last_seq + 1)
        elif first > after + 1:
            gap = Gap(reason="trimmed", first_available=first)
    if gap is not None:
        metrics.GAPS.labels(gap.reason).inc()
        after = gap.first_available - 1
    return Start(after, gap, idle=not active and after >= last_seq, replay_until=last_seq if after > 0 else 0)


@dataclass
class Batch:
    events: list[StoredEvent] = field(default_factory=list)  # empty: an idle block passed
    gap: Gap | None = None  # announced before the events


class EventFeed:
    def __init__(
        self,
        tail: StreamTail,
        shutdown: StreamShutdown,
        session_id: str,
        start: Start,
        batch: int,
        until_idle: bool,
        transport: str,
    ) -> None:
        self._store = tail.store
        self._tail = tail
        self._shutdown = shutdown
        self._session_id = session_id
        self.after = start.after
        self._replay_until = start.replay_until
        self._batch = batch
        self._count = min(batch, FIRST_READ_COUNT)  # events per read: as many as fit READ_BUDGET_BYTES, up to batch
        self._until_idle = until_idle  # end once nothing is left and nothing is coming (SSE)
        self._transport = transport

    async def __aiter__(self) -> AsyncIterator[Batch]:
        metrics.CONNECTIONS_OPENED.labels(self._transport).inc()
        if self._replay_until:
            metrics.RESUMES.labels(self._transport).inc()
        open_streams = metrics.CONNECTIONS.labels(self._transport)
        open_streams.inc()
        try:
            async for batch in self._batches():
                yield batch
        finally:
            open_streams.dec()

    async def _batches(self) -> AsyncIterator[Batch]:
        while True:
            try:
                async for batch in self._events():
                    yield batch
                return
            except Exception as exc:
                if not is_outage(exc):
                    raise
                if self._shutdown.started:
                    return
                # Redis is restarting, failing over or busy: keep the client's connection (idle
                # batches become heartbeats) and carry on from the last id sent once it answers again.
                yield Batch()
                await asyncio.sleep(REDIS_RETRY_SECONDS)

    async def _events(self) -> AsyncIterator[Batch]:
        # Catch-up: XRANGE, in batches.
        while events := await self._store.read(self._session_id, self.after, count := self._count):
            yield self._deliver(events)
            if len(events) < count:
                break
        if await self._finished():
            return
        # Live tail: blocking XREAD, a connection held while it waits.
        while not self._shutdown.started:
            events = []  # stays empty if shutdown interrupts the read
            with self._shutdown.waiting():
                events = await self._tail.read(self._session_id, self.after, self._count)
            if events:
                yield self._deliver(events)
                if events[-1].type not in _TERMINAL:
                    continue
            elif self._shutdown.started:
                return
            else:
                yield Batch()
            if await self._finished():
                return

    def _deliver(self, events: list[StoredEvent]) -> Batch:
        # A reader slower than the stream's trimming finds its next id gone: say so, never skip silently.
        gap = None
        if events[0].seq > self.after + 1:
            gap = Gap(reason="trimmed", first_available=events[0].seq)
            metrics.GAPS.labels(gap.reason).inc()
        self.after = events[-1].seq
        # The next read: as many events of this size as fit the budget, growing by doubling at most.
        fit = max(1, len(events) * READ_BUDGET_BYTES // max(1, sum(len(event.data) for event in events)))
        self._count = min(self._batch, 2 * self._count, fit)
        metrics.EVENTS_SENT.labels(self._transport).inc(len(events))
        if events[0].seq <= self._replay_until:
            metrics.RESUMED_EVENTS.labels(self._transport).inc(sum(1 for e in events if e.seq <= self._replay_until))
        return Batch(events, gap)

    async def _finished(self) -> bool:
        """The session is gone, or (for a feed that ends when idle) nothing is left or coming."""
        try:
            last_seq, active = await self._store.stream_position(self._session_id)
        except SessionNotFound:  # deleted or expired while we streamed
            return True
        return self._until_idle and not active and last_seq <= self.after
