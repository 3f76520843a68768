"""The gateway's HTTP protocol: uvicorn's httptools protocol with two bounds it lacks.

- **Request heads.** httptools buffers a request's line and headers without limit (ten connections
  sending 30 MB of unterminated headers took a gateway from 66 to 425 MB). A head still incomplete
  past `max_header_bytes` is answered 431 and the connection closed, so a connection holds at most
  that much (plus one read) of a head. The README shows the gateway on 0.0.0.0 with no proxy in
  front: it cannot count on one to bound this. Only reads that hold nothing but the head are
  counted: a read in which the previous request ended carries that request's body too (a 70 KB
  prompt in one read was answered 431), so it starts the count afresh.
- **Stalled readers.** A client that stops reading keeps its stream, and with it a tenant's stream
  slot and a Redis connection, for as long as its TCP connection lives. When the transport's write
  buffer stays full for `stalled_client_seconds`, the connection is dropped: the stream ends as if
  the client had left, and the client resumes from its last id when it reads again. A timer runs
  only while writing is paused, so streams that keep up cost nothing.

(WebSockets are bounded by their protocol's own pings, sent every half of `stalled_client_seconds`:
a client that does not answer one within the other half is closed; see gateway/server.py.)

It also offers each HTTP request a **direct body write** (`DirectBody`, in the scope under
`DIRECT_BODY`): a chunk of a streamed response's body written to the connection at once, framed as
uvicorn frames one (`RequestResponseCycle.send`), from a callback rather than the response's task.
The stream hub writes live events through it (gateway/live/hub.py). It writes only into a
response that has started, is chunked and is not over, on a connection that is open and not paused
(above the transport's high-water mark): anything else it refuses, and the caller sends through
ASGI instead. What the caller must keep is order: it writes only while the response's own task has
nothing on its way (gateway/reading/feed.py arms it only while that task waits).
"""

import asyncio
import json
import logging
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

logger = logging.getLogger(__name__)

LINGER_SECONDS = 2.0
# The scope key of a request's `DirectBody` (absent where the server is another, or for a WebSocket).
DIRECT_BODY = "tokentail.direct_body"


class DirectBody(weakref.ref[RequestResponseCycle]):
    """Writes chunks of one response's body straight to its connection, as uvicorn's `send` would
    write an `http.response.body` message with `more_body` (the same bytes: `%x\\r\\n<body>\\r\\n`),
    when uvicorn's own state allows it; `write` says whether it did. A weak reference to the request's
    cycle (calling it gives the cycle), whose scope holds it: no cycle of references keeps a request's
    objects, and a stream keeps one small object for it."""

    __slots__ = ("_flow",)

    def __new__(cls, cycle: RequestResponseCycle) -> "DirectBody":
        return super().__new__(cls, cycle)

    def __init__(self, cycle: RequestResponseCycle) -> None:  # (the reference is made by `__new__`)
        self._flow = cycle.flow

    def write(self, body: bytes) -> bool:
        """Write `body` (not empty) as the response's next chunk, unless the response has not started
        or is over, is not chunked, its client left, or its connection is closing or paused (a client
        reading slower than it is written to): then nothing is written, and False says so."""
        cycle = self()
        if (
            cycle is None
            or self._flow.write_paused
            or cycle.chunked_encoding is not True  # (None until the response started: `send` sets it then)
            or cycle.response_complete
            or cycle.disconnected
            or cycle.transport.is_closing()
        ):
            return False
        cycle.transport.write(b"%x\r\n%s\r\n" % (len(body), body))
        return True


class GatewayHttpProtocol(HttpToolsProtocol):
    max_header_bytes = 65_536
    stalled_client_seconds = 30.0

    @classmethod
    def bounded(cls, max_header_bytes: int, stalled_client_seconds: float) -> type["GatewayHttpProtocol"]:
        """The protocol class to give uvicorn (`Config(http=...)`), with these bounds."""
        bounds = {"max_header_bytes": max_header_bytes, "stalled_client_seconds": stalled_client_seconds}
        return type(cls.__name__, (cls,), bounds)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One attribute, not four: uvicorn's protocol has 27, and past 30 an instance's attributes
        # no longer share their class's keys, which costs every connection 1.5 KB more.
        self._bound = _BoundState()

    def data_received(self, data: bytes) -> None:
        if self._bound.refused:
            return  # what the client still sends after its 431 is read and dropped
        self._bound.ended_in_this_read = False
        super().data_received(data)
        if self._bound.head_bytes is None or self._bound.ended_in_this_read or self.transport.is_closing():
            return
        self._bound.head_bytes += len(data)
        if self._bound.head_bytes > self.max_header_bytes:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._bound.head_bytes = None
        super().on_headers_complete()
        cycle = self.cycle
        # (An upgrade to a WebSocket makes no cycle: this request's would be another's. A HEAD has no body.)
        if cycle is not None and cycle.scope is self.scope and self.scope["method"] != "HEAD":
            self.scope[DIRECT_BODY] = DirectBody(cycle)  # type: ignore[literal-required]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # A next request's head may follow on this connection, some of it in this very read, after
        # the body: of that read, nothing is counted (what it brings of the head is at most a read).
        self._bound.head_bytes = 0
        self._bound.ended_in_this_read = True

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._bound.stalled is None:
            self._bound.stalled = self.loop.call_later(self.stalled_client_seconds, self._drop_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stalled()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_stalled()
        super().connection_lost(exc)

    def _drop_stalled(self) -> None:
        self._bound.stalled = None
        logger.info("dropping %s: it read nothing for %.0f s", _client(self.client), self.stalled_client_seconds)
        self.transport.abort()

    def _cancel_stalled(self) -> None:
        if self._bound.stalled is not None:
            self._bound.stalled.cancel()
            self._bound.stalled = None

    def _refuse_head(self) -> None:
        message = f"the request line and headers exceed {self.max_header_bytes} bytes"
        body = json.dumps({"error": {"type": "headers_too_large", "message": message}}).encode()
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        logger.info("refused %s: %s", _client(self.client), message)
        self.transport.write(head + body)
        # Closing with the client's bytes still unread would reset the connection, and the client
        # could lose the answer: end our side, drop what still comes in, close shortly after.
        self._bound.refused = True
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


class _BoundState:
    __slots__ = ("head_bytes", "ended_in_this_read", "stalled", "refused")

    def __init__(self) -> None:
        self.head_bytes: int | None = 0  # of the request head being read; None while a body is
        self.ended_in_this_read = False
        self.stalled: asyncio.TimerHandle | None = None
        self.refused = False


def _client(address: tuple[str, int] | None) -> str:
    return f"{address[0]}:{address[1]}" if address else "a client"
