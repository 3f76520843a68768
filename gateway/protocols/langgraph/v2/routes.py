"""The v2 Agent Streaming Protocol's endpoints, under `/langgraph` (`new Client({apiUrl:
".../langgraph"})`, then `client.threads.stream(threadId, {assistantId})`):

    POST /threads/{thread_id}/commands        a command (v2/commands.py): its response as JSON
    POST /threads/{thread_id}/stream/events   {channels, namespaces?, depth?, since?}: the thread's
                                              events as SSE (v2/render.py), after `Last-Event-ID`
                                              (wins) or `since` (a seq), else from its last run's start
    WS   /threads/{thread_id}/stream/events   the same commands and subscriptions on one socket
                                              (v2/socket.py); a token by `?token=` (browsers send no headers)

A thread is the chat of that id (the session `ChatTurns.session` names): a stream of a thread with
no session yet is a 404 (the SDK opens its streams once `run.start` answered). Callers as for the v1
routes (access.py: an API key or a chat token, as a bearer or `x-api-key`; on the WebSocket, a bearer
or `?token=`). Each stream holds one of the tenant's stream slots; a socket holds one, and each of its
subscriptions one more (v2/socket.py).
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, WebSocket
from fastapi.responses import StreamingResponse

from tokentail.gateway import socket_tasks
from tokentail.gateway.access.auth import bearer_credential
from tokentail.gateway.commands.turns import ChatTurns
from tokentail.gateway.deps import AuthDep, SettingsDep, StoreDep, run_commands, streams_for
from tokentail.gateway.errors import describe
from tokentail.gateway.protocols.langgraph.access import ChatTurnsDep, StreamsDep
from tokentail.gateway.protocols.langgraph.threads import thread_session
from tokentail.gateway.protocols.langgraph.v2.commands import Command, V2Commands
from tokentail.gateway.protocols.langgraph.v2.feed import StreamRequest, V2Feed, values_reader
from tokentail.gateway.protocols.langgraph.v2.render import Cursor, sse_frame
from tokentail.gateway.protocols.langgraph.v2.socket import ThreadSocket
from tokentail.gateway.reading.streams import SSE_HEADERS, SSE_PING
from tokentail.gateway.schemas import ERROR_RESPONSES, STREAM_RESPONSES
from tokentail.shared.vocabulary.errors import TokentailError

router = APIRouter(prefix="/langgraph", tags=["langgraph"])
LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID", description="resume after this event_id")]


@router.post("/threads/{thread_id}/commands", responses=ERROR_RESPONSES)
async def command(thread_id: str, body: Command, turns: ChatTurnsDep) -> dict[str, Any]:
    """One command of the thread; its response (`type: success | error`), as the SDK's v2 client reads it."""
    return await V2Commands(turns, thread_id).answer(body)


@router.post("/threads/{thread_id}/stream/events", responses=STREAM_RESPONSES, response_class=StreamingResponse)
async def stream_events(
    thread_id: str,
    body: StreamRequest,
    turns: ChatTurnsDep,
    streams: StreamsDep,
    last_event_id: LastEventIdHeader = None,
) -> StreamingResponse:
    """The thread's events as `filter` asks, from its last run's start, or after `Last-Event-ID` (an
    `event_id`: `<ms>-<seq>`, or `<ms>-<seq>.<k>`) or `since`; for as long as the client stays."""
    cursor = Cursor.of(last_event_id) if last_event_id else Cursor.since(body.since) if body.since is not None else None
    store = turns.store
    session = await store.get_session(await thread_session(turns, thread_id))  # 404 before its first run
    slot = await streams.slots.take(streams.caller.tenant, streams.caller.session_id)
    feed = V2Feed(streams, session, body.filter(), cursor, values_reader(store), "langgraph-v2")

    async def frames() -> AsyncIterator[bytes]:
        try:
            async for parts in feed.batches():
                yield "".join(sse_frame(part) for part in parts).encode() if parts else SSE_PING
        finally:
            feed.stop()
            await streams.slots.release(slot)

    return StreamingResponse(frames(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.websocket("/threads/{thread_id}/stream/events")
async def thread_socket(
    websocket: WebSocket,
    thread_id: str,
    auth: AuthDep,
    store: StoreDep,
    settings: SettingsDep,
    token: Annotated[str | None, Query()] = None,
) -> None:
    """The v2 WebSocket transport: commands and `subscription.*` in, their responses and the
    subscriptions' events out. A refusal closes the socket with 4000 + the HTTP status (4401, 4403,
    4404), which the SDK takes as final."""
    await websocket.accept()
    try:
        caller = auth.authenticate(bearer_credential(websocket.headers.get("authorization")), token)
        caller.require_chat()
        await auth.chat_session(caller, thread_id, store)
        streams = streams_for(websocket, caller)
        slot = await streams.slots.take(caller.tenant, caller.session_id)
    except TokentailError as exc:
        status, type_ = describe(exc)
        await websocket.close(code=4000 + status if status < 500 else 1011, reason=f"{type_}: {exc}"[:120])
        return
    socket = ThreadSocket(websocket, streams, V2Commands(run_commands(ChatTurns, websocket, caller), thread_id))
    try:
        async for frame in socket_tasks.json_frames(websocket, settings.max_request_bytes):
            await socket.take(frame)
    except Exception as exc:
        if not socket_tasks.closed_by_client(exc):
            raise
    finally:
        await socket.close()
        await streams.slots.release(slot)
