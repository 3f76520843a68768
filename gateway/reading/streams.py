"""Opening a session's event stream for one client, in an encoding: the native SSE and NDJSON route
and the chat UI protocols' routes all go through `Streams.open`, so catch-up, live tail, gaps, the
tenant's stream slots and 204 behave the same in every encoding."""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial

from fastapi import Response

from tokentail.gateway.access.auth import Caller
from tokentail.gateway.access.limits import StreamSlots
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.feed import EventFeed, start_position
from tokentail.gateway.reading.response import Encoding, EventStreamResponse
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord

# A Server-Sent Events comment: every SSE encoding sends it after a heartbeat with nothing to send, so
# proxies keep the connection.
SSE_PING = b": ping\n\n"
SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


class Reserved:
    """A stream slot taken before the request does anything else (queues a run, answers a question),
    so that a 429 for it means nothing was done: a client's retry of a 429 starts no second run.
    `Streams.open` hands it to the stream it opens; else it is given back as the request ends."""

    __slots__ = ("slot", "handed_over")

    def __init__(self, slot: str | None) -> None:
        self.slot = slot
        self.handed_over = False


class Streams:
    def __init__(
        self, caller: Caller, store: SessionStore, hub: StreamHub, settings: Settings, slots: StreamSlots
    ) -> None:
        self.caller = caller
        self.store = store
        self.hub = hub
        self.settings = settings
        self.slots = slots

    async def open(
        self,
        session_id: str,
        after: int,
        encoding: Encoding,
        transport: str,
        headers: dict[str, str] | None = None,
        resuming: bool = True,
        on_close: Callable[[], Awaitable[None]] | None = None,
        snapshot: bool = False,
        reserved: Reserved | None = None,
        until_idle: bool = True,
    ) -> Response:
        """The events after `after`, in `encoding`; 204 if nothing is left to send and nothing is coming.
        (A gap frame alone would not move a browser's Last-Event-ID, so it would reconnect for ever.)
        `resuming`: False for the answer to a run just posted, which the resume metrics do not count.
        `on_close`: called however the stream ends, once it has. `snapshot`: a client far behind gets
        a compacted catch-up first (gateway/reading/snapshot.py). `reserved`: the slot the request
        took first (`reserve`), else one is taken here. `until_idle`: False for a stream that its
        encoding ends (`finished`), however the session stands (a run followed alone: a child may end
        after its session's run did)."""
        start = await start_position(self.store, session_id, after, snapshot)
        if not resuming:
            start = replace(start, replay_until=0)
        if start.idle and until_idle:
            return Response(status_code=204)
        slot = await self.slots.take(self.caller.tenant, self.caller.session_id) if reserved is None else reserved.slot
        feed = EventFeed(self.hub, session_id, start, self.settings.sse_batch, until_idle, transport=transport)
        release = partial(self.slots.release, slot)

        async def closed() -> None:
            try:
                if on_close is not None:
                    await on_close()
            finally:
                await release()

        headers = {**SSE_HEADERS, **(headers or {})}
        response = EventStreamResponse(
            feed, start.gap, encoding, headers, on_close=release if on_close is None else closed
        )
        if reserved is not None:
            reserved.handed_over = True  # the response gives it back when it ends
        return response

    @contextlib.asynccontextmanager
    async def reserve(self) -> AsyncIterator[Reserved]:
        """One of the tenant's stream slots, taken first, by a request that queues a run (or answers
        a question) and then streams it or waits for it: it holds what a stream holds, and a
        `TooManyStreams` (429) comes before anything was done. Given back as the block ends, unless
        `open` handed it to a stream, which gives it back when it ends."""
        reserved = Reserved(await self.slots.take(self.caller.tenant, self.caller.session_id))
        try:
            yield reserved
        finally:
            if not reserved.handed_over:
                await self.slots.release(reserved.slot)

    def run_to_replay(self, session: SessionRecord, now: float) -> RunRecord | None:
        """The run a reconnecting chat UI is shown again from its start: the active one, else the last
        one if it ended within `ui_replay_seconds` (a client that dropped just before the end)."""
        if session.active_run is not None:
            return session.active_run
        last = session.runs[-1] if session.runs else None
        if last is None or last.finished_at is None:
            return None
        return last if now - last.finished_at <= self.settings.ui_replay_seconds else None
