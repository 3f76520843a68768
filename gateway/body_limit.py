"""Refuse request bodies over `max_request_bytes` with 413, before they are read into memory.

A declared `Content-Length` over the limit is refused without reading the body into memory; a body
sent without one (chunked) is counted as it arrives and refused once it passes the limit. Either way,
a body up to `DRAIN_FACTOR` times the limit is read to its end (and dropped) before the answer: a
client or proxy still sending it would otherwise find the connection closed under its write, and
nginx answers that with a 502 and takes the gateway out of rotation. Past that, the connection is
closed at once: nobody well-behaved sends it.
"""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokentail.gateway.errors import error_response

DRAIN_FACTOR = 4  # as for WebSocket messages, whose socket is closed past 4 times the limit


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body exceeds {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= DRAIN_FACTOR * self.max_bytes:
                await self._drain(receive, 0)
            await error_response(413, "input_too_large", too_large)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive, received)
                raise HTTPException(413, too_large)  # answered by the app's error handlers
            return message

        await self.app(scope, counted, send)

    async def _drain(self, receive: Receive, received: int) -> None:
        """Read what is left of the body, dropping it, up to `DRAIN_FACTOR` times the limit."""
        while received <= DRAIN_FACTOR * self.max_bytes:
            message = await receive()
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
