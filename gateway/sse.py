"""One client's event stream as Server-Sent Events.

    retry: <ms>                    once, so EventSource reconnects quickly after a drop
    event: gap / data: {...}       when the asked position is not (or no longer) in the stream (no `id:`)
    id: <seq> / event: <type> / data: <json>   catch-up by XRANGE, then live by blocking XREAD
    : ping                         after each idle block, so proxies keep the connection open

The stream ends once everything is delivered and no run is queued or running: the client's next
reconnect is answered 204, which stops a browser EventSource for good.
"""

from collections.abc import AsyncGenerator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.feed import EventFeed
from shared.events import Gap
from shared.store import StoredEvent

PING = b": ping\n\n"


def encode_events(events: list[StoredEvent]) -> bytes:
    return b"".join(b"id: %d\nevent: %s\ndata: %s\n\n" % (e.seq, e.type, e.data) for e in events)


def encode_gap(gap: Gap) -> bytes:
    return b"event: gap\ndata: %s\n\n" % gap.model_dump_json().encode()


async def sse_frames(feed: EventFeed, first_gap: Gap | None, retry_ms: int) -> AsyncGenerator[bytes]:
    yield b"retry: %d\n\n" % retry_ms
    if first_gap is not None:
        yield encode_gap(first_gap)
    async for batch in feed:
        if not batch.events:
            yield PING
            continue
        gap = encode_gap(batch.gap) if batch.gap is not None else b""
        yield gap + encode_events(batch.events)


class EventStreamResponse(StreamingResponse):
    """A StreamingResponse that closes its frames generator, then runs `on_close`, however it ends.

    Starlette may stop iterating with the generator suspended at a `yield`, left for the garbage
    collector to close (its `finally` blocks would run late). When it ends the stream by cancelling
    it (the client went away), any `await` in the generator's `finally` is cancelled too: cleanup that
    must reach Redis goes in `on_close`, which runs out of reach of that cancellation.
    """

    def __init__(
        self, frames: AsyncGenerator[bytes], headers: dict[str, str], on_close: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=headers)
        self._frames = frames
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._frames.aclose()
            await self._on_close()
