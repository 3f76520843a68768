"""What every WebSocket conversation that serves requests as tasks shares (the AI SDK's chat socket,
the Responses API's socket): telling a client that left from a failure, and stopping the tasks."""

import asyncio

from fastapi import WebSocketDisconnect


def closed_by_client(exc: BaseException) -> bool:
    """A send on a socket the client closed meanwhile: nothing went wrong here."""
    return isinstance(exc, WebSocketDisconnect) or (isinstance(exc, RuntimeError) and "close message" in str(exc))


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait for their end, cancelling again those that go on: on Python 3.11 an
    `asyncio.wait_for` inside (redis-py's, the stream slots') can swallow a cancellation that lands
    as what it waits for completes (python/cpython#86296). Such a request went on streaming, and the
    socket's receiving loop, waiting for it, stopped reading: pongs too, so the socket was closed."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
