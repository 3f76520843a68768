"""WebSocket: the same events as the SSE endpoint, plus runs and cancels from the client.

    server → client   {"id": 7, "event": "message.delta", "data": {...}}   (gap frames have no id)
                      {"type": "ack", "request": "run" | "cancel" | "resume", ...}
                      {"type": "error", "error": {"type": ..., "message": ...}}
    client → server   {"type": "run", "input": "...", "model"?, "params"?, "multitask"?}
                      {"type": "cancel"}
                      {"type": "resume", "last_event_id": N}

Credentials are those of the REST API: an API key or a stream token as a bearer header, or a
stream token as `?token=`; a stream token reads, and only an API key may send `run` and `cancel`.
Unlike an SSE stream, the socket stays open between runs. It closes with 4000 + the HTTP status of
a refusal (4401 bad credentials, 4403 another session's token, 4404/4410 unknown or gone session,
4400 bad `last_event_id`, 4429 too many streams), and 1012 when the gateway stops (the client
reconnects, to another replica, with its last id).
"""

import asyncio
import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from gateway.auth import bearer_credential
from gateway.deps import AuthDep, RunBudgetDep, SettingsDep, ShutdownDep, StoreDep, StreamSlotsDep, TailDep
from gateway.errors import describe
from gateway.feed import EventFeed, start_position
from gateway.routes.events import parse_last_event_id
from gateway.routes.sessions import queue_follow_up
from gateway.schemas import CreateRun
from shared.errors import Forbidden, InputTooLarge, InvalidInput, RateLimited, RunConflict, TokentailError
from shared.events import Gap
from shared.store import StoredEvent

router = APIRouter(prefix="/v1/sessions", tags=["events"])


def _event_message(event: StoredEvent) -> str:
    # The stored data is JSON already: splice it in rather than parse and re-serialise it.
    return f'{{"id":{event.seq},"event":"{event.type.decode()}","data":{event.data.decode()}}}'


def _gap_message(gap: Gap) -> str:
    return f'{{"event":"gap","data":{gap.model_dump_json()}}}'


class _Socket:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._lock = asyncio.Lock()  # the feed and the request handler both send

    async def send(self, message: str) -> None:
        async with self._lock:
            await self.websocket.send_text(message)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(json.dumps(message, separators=(",", ":"), ensure_ascii=False))

    async def error(self, exc: Exception, type_: str) -> None:
        await self.send_json({"type": "error", "error": {"type": type_, "message": str(exc)}})


@router.websocket("/{session_id}/ws")
async def session_socket(
    websocket: WebSocket,
    session_id: str,
    store: StoreDep,
    tail: TailDep,
    shutdown: ShutdownDep,
    settings: SettingsDep,
    auth: AuthDep,
    slots: StreamSlotsDep,
    budget: RunBudgetDep,
    last_event_id: Annotated[str | None, Query()] = None,
    token: Annotated[str | None, Query()] = None,
) -> None:
    # Accept first, so a refusal can say why (an error message, then a 4000 + status close code).
    await websocket.accept()
    socket = _Socket(websocket)
    feed_task: asyncio.Task[int] | None = None
    slot = None
    try:
        caller = auth.authenticate(bearer_credential(websocket.headers.get("authorization")), token)
        await auth.check_access(caller, session_id, store)
        slot = await slots.take(caller.tenant)
        feed_task = await _follow(socket, store, tail, shutdown, settings.sse_batch, session_id, last_event_id)
        while True:
            receive = asyncio.ensure_future(websocket.receive_text())
            done, _ = await asyncio.wait({receive, feed_task}, return_when=asyncio.FIRST_COMPLETED)
            if feed_task in done:
                receive.cancel()
                # The session went away, or the gateway is stopping: either way, the client moves on.
                code = 1012 if shutdown.started else 4410
                await websocket.close(code=code)
                return
            try:
                message = json.loads(receive.result())
            except ValueError:
                await socket.error(ValueError("messages must be JSON objects"), "validation_error")
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "run":
                try:
                    caller.require_api_key()
                    body = CreateRun.model_validate({k: v for k, v in message.items() if k != "type"})
                    run = await queue_follow_up(store, settings, budget, caller, session_id, body)
                except ValidationError as exc:
                    await socket.error(exc, "validation_error")
                    continue
                except REFUSALS as exc:  # refused, the socket stays
                    await socket.error(exc, describe(exc)[1])
                    continue
                await socket.send_json({"type": "ack", "request": "run", "run_id": run.run_id})
            elif kind == "cancel":
                try:
                    caller.require_api_key()
                except REFUSALS as exc:
                    await socket.error(exc, describe(exc)[1])
                    continue
                _, run_id = await store.cancel_run(session_id)
                await socket.send_json({"type": "ack", "request": "cancel", "run_id": run_id})
            elif kind == "resume":
                feed_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed_task
                position = str(message.get("last_event_id", ""))
                feed_task = await _follow(socket, store, tail, shutdown, settings.sse_batch, session_id, position)
                await socket.send_json({"type": "ack", "request": "resume", "last_event_id": int(position or 0)})
            else:
                await socket.error(ValueError("type must be run, cancel or resume"), "validation_error")
    except WebSocketDisconnect:
        pass
    except TokentailError as exc:
        # The HTTP status of the same refusal, in the 4000s close codes (404 -> 4404, 410 -> 4410).
        status, type_ = describe(exc)
        await socket.error(exc, type_)
        await websocket.close(code=4000 + status if status < 500 else 1011)
    finally:
        if feed_task is not None:
            feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed_task
        await slots.release(slot)


# Refusals of one client message: the error goes back on the socket, which stays open.
REFUSALS = (RunConflict, InputTooLarge, InvalidInput, Forbidden, RateLimited)


async def _follow(
    socket: _Socket,
    store: StoreDep,
    tail: TailDep,
    shutdown: ShutdownDep,
    batch: int,
    session_id: str,
    last_event_id: str | None,
) -> asyncio.Task[int]:
    """Start sending the session's events after `last_event_id`, as a task of its own."""
    start = await start_position(store, session_id, parse_last_event_id(last_event_id))
    feed = EventFeed(tail, shutdown, session_id, start, batch, until_idle=False, transport="ws")

    async def run() -> int:
        if start.gap is not None:
            await socket.send(_gap_message(start.gap))
        async for part in feed:
            if part.gap is not None:
                await socket.send(_gap_message(part.gap))
            for event in part.events:
                await socket.send(_event_message(event))
        return feed.after

    return asyncio.create_task(run())
