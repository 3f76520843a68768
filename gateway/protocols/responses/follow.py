"""One response of OpenAI's Responses API followed from its run's events: what its two transports
share, the HTTP route (gateway/protocols/responses/routes.py) and the WebSocket mode
(gateway/protocols/responses/socket.py). Both read the same events through the same renderer
(responses.py), so a response has the same events, ids and sequence numbers on either, and either
can resume the other's with `GET /v1/responses/{id}?stream=true&starting_after=N`.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from tokentail.gateway.commands.writes import SessionWrites
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.protocols.responses.output import Part
from tokentail.gateway.protocols.responses.render import ResponseEvents
from tokentail.gateway.protocols.responses.requests import ResponseRef
from tokentail.gateway.reading.feed import Batch, EventFeed, start_position
from tokentail.gateway.reading.shutdown import StreamShutdown
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.errors import SessionExpired, SessionNotFound


def events_of(ref: ResponseRef, starting_after: int = -1, keep: bool = False, **known: Any) -> ResponseEvents:
    return ResponseEvents(ref.run.run_id, ref.segment, ref.header(**known), starting_after, keep)


async def replay(store: SessionStore, ref: ResponseRef, events: ResponseEvents) -> None:
    """Run the response's stored events so far through `events` (a Response object as of now)."""
    after = ref.after
    while not events.finished and (stored := await store.read(ref.session.session_id, after, 1000)):
        events.rendered(Batch([Chunk(stored)]))
        after = stored[-1].seq


async def follow(
    hub: StreamHub, ref: ResponseRef, events: ResponseEvents, batch: int, transport: str, streamed: bool = True
) -> AsyncGenerator[list[Part]]:
    """The response's events from its run's start, a batch's at a time, until it ends: then
    `events.finished`. Ends unfinished if its session went away, or the gateway is stopping.
    `streamed`: False when the client gets only the finished response (no first delta is written to it)."""
    session_id = ref.session.session_id
    start = await start_position(hub.store, session_id, ref.after)
    if opening := events.opening(start.gap):
        yield opening
    feed = EventFeed(hub, session_id, start, batch, until_idle=True, transport=transport, writes_deltas=streamed)
    async with contextlib.aclosing(feed.__aiter__()) as batches:
        async for got in batches:
            if parts := [part for rendered, _ in events.rendered(got) for part in rendered]:
                yield parts
            if events.finished:
                return


async def wait_for_end(
    hub: StreamHub, ref: ResponseRef, events: ResponseEvents, batch: int, seconds: float | None
) -> None:
    """Follow the response's events until it ends (or `seconds` pass)."""
    unstreamed = follow(hub, ref, events, batch, "responses", streamed=False)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds), contextlib.aclosing(unstreamed) as parts:
            async for _ in parts:
                pass


async def cancel_unless_ended(
    runs: SessionWrites, shutdown: StreamShutdown, ref: ResponseRef, events: ResponseEvents
) -> None:
    """A request that is not `background` ended before its response did: its client left, or was
    dropped as stalled. So does the response, as OpenAI's does; only that response, though: its run
    is cancelled only while it is still in the response's segment and that segment has not ended at
    a question (cancel_run.lua decides, in the same step as the cancel). `events` may lag behind
    (a client that stopped reading), and by then the run may have ended, or gone on after an
    answer as the next response. Not when this gateway is stopping (a deploy): the request ended
    for it, not for the client, which may read on elsewhere."""
    if not events.finished and not shutdown.started:
        with contextlib.suppress(SessionNotFound, SessionExpired):  # deleted meanwhile: nothing left to cancel
            await runs.cancel_run(ref.session.session_id, ref.run.run_id, segment=ref.segment, ended_at_question=True)
