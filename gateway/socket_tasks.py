"""What every WebSocket conversation that serves requests as tasks shares (the AI SDK's chat socket,
the Responses API's socket, LangGraph's v2 socket): reading its JSON frames, telling a client that left
from a failure, and stopping the tasks."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect


async def json_frames(websocket: WebSocket, most_bytes: int) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects the client sends, until it leaves. Anything else (binary, over `most_bytes`,
    not JSON, not an object) is not a frame its SDK sends: left unanswered, with nothing to answer it by."""
    while (message := await websocket.receive())["type"] != "websocket.disconnect":
        text = message.get("text")
        if text is None or len(text) > most_bytes:
            continue
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if isinstance(frame, dict):
            yield frame


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
