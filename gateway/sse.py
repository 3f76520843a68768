"""One client's event stream: catch-up from the stored stream, then the live tail, as SSE.

    retry: <ms>                    once, so EventSource reconnects quickly after a drop
    event: gap / data: {...}       only if the asked position is not in the stream (no `id:`)
    id: <seq> / event: <type> / data: <json>   catch-up by XRANGE, then live by blocking XREAD
    : ping                         after each idle block, so proxies keep the connection open

The stream ends once everything is delivered and no run is queued or running: the client's next
reconnect is answered 204, which stops a browser EventSource for good.
"""

from collections.abc import AsyncIterator

from gateway.shutdown import StreamShutdown
from gateway.tail import StreamTail
from shared.errors import SessionNotFound
from shared.events import TERMINAL_EVENTS, Gap
from shared.store import SessionStore, StoredEvent

_TERMINAL = frozenset(event.encode() for event in TERMINAL_EVENTS)
PING = b": ping\n\n"


def encode_events(events: list[StoredEvent]) -> bytes:
    return b"".join(b"id: %d\nevent: %s\ndata: %s\n\n" % (e.seq, e.type, e.data) for e in events)


def encode_gap(gap: Gap) -> bytes:
    return b"event: gap\ndata: %s\n\n" % gap.model_dump_json().encode()


class EventStream:
    def __init__(
        self,
        store: SessionStore,
        tail: StreamTail,
        shutdown: StreamShutdown,
        session_id: str,
        after: int,
        gap: Gap | None,
        retry_ms: int,
        batch: int,
    ) -> None:
        self._store = store
        self._tail = tail
        self._shutdown = shutdown
        self._session_id = session_id
        self._after = after
        self._gap = gap
        self._retry_ms = retry_ms
        self._batch = batch

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"retry: %d\n\n" % self._retry_ms
        if self._gap is not None:
            yield encode_gap(self._gap)
        # Catch-up: plain XRANGE on the shared pool, in batches.
        while batch := await self._store.read(self._session_id, self._after, self._batch):
            yield self._deliver(batch)
            if len(batch) < self._batch:
                break
        if await self._finished():
            return
        # Live tail: blocking XREAD on a connection of its own.
        while not self._shutdown.started:
            batch = []  # stays empty if shutdown interrupts the read
            with self._shutdown.waiting():
                batch = await self._tail.read(self._session_id, self._after, self._batch)
            if batch:
                yield self._deliver(batch)
                if batch[-1].type not in _TERMINAL:
                    continue
            elif self._shutdown.started:
                return
            else:
                yield PING
            if await self._finished():
                return

    def _deliver(self, batch: list[StoredEvent]) -> bytes:
        # A reader slower than the stream's trimming finds its next id gone: say so, never skip silently.
        skipped = batch[0].seq > self._after + 1
        gap = encode_gap(Gap(reason="trimmed", first_available=batch[0].seq)) if skipped else b""
        self._after = batch[-1].seq
        return gap + encode_events(batch)

    async def _finished(self) -> bool:
        """Nothing left to send and nothing that could add more."""
        try:
            last_seq, active = await self._store.stream_position(self._session_id)
        except SessionNotFound:  # deleted or expired while we streamed
            return True
        return not active and last_seq <= self._after
