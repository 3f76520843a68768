"""Writing one client's event stream: the feed's batches, in the encoding the client asked for, on
one HTTP response, and how that response outlives the framework's call (`call_detaching`).

The stream ends once everything is delivered and no run is queued or running: the client's next
reconnect is answered 204, which stops a browser EventSource for good. An encoding whose response
is one run (a UI protocol's) ends it after that run's last event.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tokentail.gateway.protocol import DIRECT_BODY, DirectBody
from tokentail.gateway.reading.feed import Batch, EventFeed
from tokentail.shared.store.reads import Entry
from tokentail.shared.vocabulary.events import Gap

T = TypeVar("T")

# The scope key of the list in which `call_detaching` collects the streams to continue (see there).
DETACHED = "tokentail.detached_streams"
Body = Callable[[Receive, Send], Awaitable[None]]


class Encoding(Protocol):
    """How a feed's batches become bytes on one connection: what each module of gateway/encodings/ and
    each renderer of gateway/protocols/ that speaks over HTTP implement."""

    media_type: str

    def head(self, gap: Gap | None) -> bytes:
        """What opens the stream, with the gap (if any) before the first event."""

    def batch(self, batch: Batch) -> bytes:
        """A batch of events (or, with none, a heartbeat)."""

    @property
    def finished(self) -> bool:
        """Whether what this stream is about is over (a UI protocol's run ended): then close it."""

    def tail(self) -> bytes:
        """What closes the stream."""

    @property
    def live_frames(self) -> Callable[[list[Entry]], bytes] | None:
        """The bytes of live events (as entries: `Chunk`), where they are the same for every client of
        the encoding (a framing of the stored events, with no state of its own): the hub writes them
        straight to each client, made once. None for an encoding that keeps state per client (a
        renderer's)."""


class _DetachedStream(Response):
    """An event stream's response: its headers and first bytes (`head`) go through the framework's call
    chain (so middleware such as CORS still adds its headers); its body then outlives that call under
    `call_detaching`, on the server's own `send`, each write straight to the server rather than through
    every middleware's wrapper of `send`. `on_close` runs however the stream ends (cleanup that must
    reach Redis, such as giving back the stream slot)."""

    def __init__(
        self, media_type: str, head: bytes, headers: dict[str, str], on_close: Callable[[], Awaitable[None]]
    ) -> None:
        # As StreamingResponse does: no body, so no Content-Length.
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)
        self._head = head
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": self._head, "more_body": True})
        except BaseException:
            await self._on_close()
            raise
        self.raw_headers, self._head = [], b""  # sent: not kept for as long as the stream stays open
        if (detached := scope.get(DETACHED)) is not None:
            self._detaching(scope)
            detached.append(self._body)
        else:
            await self._body(receive, send)

    def _detaching(self, scope: Scope) -> None:
        """The body is about to be detached, in the server's `scope`."""

    async def _body(self, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class EventStreamResponse(_DetachedStream):
    """The feed's batches in an encoding, one write per batch, straight to the ASGI server.

    A task waits for the client to leave and stops the feed then, so a stream with nothing to send
    ends at once, not at its next heartbeat. Detached (`call_detaching`), where the server offers a
    direct write (gateway/protocol.py's `DirectBody`) and the encoding has `live_frames`, the hub writes
    the live chunks that need nothing of the feed through it (gateway/live/hub.py).
    """

    def __init__(
        self,
        feed: EventFeed,
        first_gap: Gap | None,
        encoding: Encoding,
        headers: dict[str, str],
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(encoding.media_type, encoding.head(first_gap), headers, on_close)
        self._feed = feed
        self._encoding = encoding

    def _detaching(self, scope: Scope) -> None:
        direct: DirectBody | None = scope.get(DIRECT_BODY)
        if direct is not None and (frames := self._encoding.live_frames) is not None:
            self._feed.write_directly(frames, direct)

    async def _body(self, receive: Receive, send: Send) -> None:
        try:
            watching = asyncio.create_task(self._watch(receive))
            try:
                encoding = self._encoding
                async with contextlib.aclosing(self._feed.__aiter__()) as batches:
                    async for batch in batches:
                        if body := encoding.batch(batch):
                            await send({"type": "http.response.body", "body": body, "more_body": True})
                        if encoding.finished:
                            self._feed.ends("finished")
                            break
                        del batch, body  # see EventFeed._events: kept by no frame while the stream waits
                await send({"type": "http.response.body", "body": encoding.tail(), "more_body": False})
            finally:
                watching.cancel()
        finally:
            await self._on_close()

    async def _watch(self, receive: Receive) -> None:
        await disconnected(receive)
        self._feed.stop()


async def disconnected(receive: Receive) -> None:
    """Return once the client has gone (its request's body was read already: only that is left)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class ByteStreamResponse(_DetachedStream):
    """An event stream that is not a feed's in an encoding (ACP's, rendered per connection with what it
    reads beside the session's events): the bytes `chunks` yields, each a write, until it ends or the
    client leaves (then it is closed)."""

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        media_type: str,
        head: bytes,
        headers: dict[str, str],
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(media_type, head, headers, on_close)
        self._chunks = chunks

    async def _body(self, receive: Receive, send: Send) -> None:
        try:
            with contextlib.suppress(ClientLeft):
                await unless_left(receive, self._written(send))
        finally:
            await self._on_close()

    async def _written(self, send: Send) -> None:
        async with contextlib.aclosing(self._chunks) as chunks:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class ClientLeft(Exception):
    """The client of a request that waits left before its answer."""


async def unless_left(receive: Receive, work: Awaitable[T]) -> T:
    """What `work` gives, unless the request's client leaves first: then `work` is cancelled and
    ClientLeft raised, so a request that waits (for a run's end) holds nothing once nobody reads it.
    For a request whose body was read already: all that may follow on `receive` is its client leaving."""
    working = asyncio.ensure_future(work)
    leaving = asyncio.ensure_future(disconnected(receive))
    try:
        await asyncio.wait({working, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (working, leaving):
            task.cancel()
        await asyncio.gather(working, leaving, return_exceptions=True)
    if working.cancelled():
        raise ClientLeft
    return working.result()


async def call_detaching(
    app: Callable[[Scope, Receive, Send], Awaitable[None]], scope: Scope, receive: Receive, send: Send
) -> None:
    """Call the gateway's ASGI app so that an event stream outlives the framework's call.

    An open stream is mostly waiting. Streamed from inside its route, it would keep the whole call
    chain of FastAPI and Starlette (middleware, routing, dependency solving: about 15 KB of frames
    and locals per stream) alive for as long as the client stays. Instead, `EventStreamResponse`
    sends its headers and first bytes through that chain (so middleware such as CORS still adds its
    headers), hands its body over and returns; the body then runs here, on the server's own
    `receive` and `send`, with only its own frames.
    """
    if scope["type"] != "http":
        return await app(scope, receive, send)
    detached: list[Body] = []
    server_scope = dict(scope)
    scope[DETACHED] = detached
    await app(scope, receive, send)
    if detached:
        # What the framework kept in the scope for its call (exit stacks, route, endpoint) is done
        # with, but the server holds the scope as long as the connection: let it go. Emptied first,
        # so that the dict, grown by the framework's keys, shrinks back (about 0.7 KB a stream).
        scope.clear()
        scope.update(server_scope)
    del server_scope
    for body in detached:
        await body(receive, send)
