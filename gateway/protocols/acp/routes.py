"""The Agent Client Protocol at `/acp`, over Streamable HTTP and a WebSocket, as the official SDKs'
clients speak it (`agent-client-protocol`'s `create_http_stream` and `create_websocket_stream`,
`@agentclientprotocol/sdk`'s): docs/acp.md.

HTTP: `initialize` is POSTed and answered at once (200, its `Acp-Connection-Id`); every later message is
POSTed with that id (202: its answer comes on a stream); `GET` with `Accept: text/event-stream` opens the
connection's stream, or, with `Acp-Session-Id`, a session's (streams.py); `DELETE` ends the connection.
Any gateway takes any of them: the connection is kept in Redis (shared/features/acp_connections.py).
WebSocket: the same messages, one a text frame, the first `initialize`; everything the connection is
sent comes on the socket, and the connection ends with it. Outside the OpenAPI schema: it is JSON-RPC.
"""

import asyncio
import contextlib
import functools
import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket
from fastapi.responses import JSONResponse

from tokentail.gateway import socket_tasks
from tokentail.gateway.access.auth import Caller, bearer_credential
from tokentail.gateway.commands.turns import RunCommands, check_agent_name
from tokentail.gateway.deps import CallerDep, run_commands
from tokentail.gateway.protocols.acp.methods import (
    PROTOCOL_VERSION,
    AcpMethods,
    capabilities,
    response,
)
from tokentail.gateway.protocols.acp.streams import Sent, outbox, session_messages, session_place
from tokentail.gateway.reading.response import ByteStreamResponse
from tokentail.gateway.reading.streams import SSE_HEADERS
from tokentail.shared.features.acp_connections import AcpConnection, AcpConnections
from tokentail.shared.features.workers import version
from tokentail.shared.vocabulary.errors import InvalidInput, SessionNotFound, TokentailError

router = APIRouter(include_in_schema=False)

CONNECTION_HEADER, SESSION_HEADER = "Acp-Connection-Id", "Acp-Session-Id"
CONNECTION_TTL_SECONDS = 3600  # a connection unused (no request, no stream open) this long is forgotten


def connections_of(app_state: Any) -> AcpConnections:
    """The app's ACP connections (made on the first ACP request)."""
    if not hasattr(app_state, "acp_connections"):
        store = app_state.store
        cluster = app_state.settings.redis_cluster
        app_state.acp_connections = AcpConnections(store.redis, store.keys, CONNECTION_TTL_SECONDS, cluster)
    connections: AcpConnections = app_state.acp_connections
    return connections


def _message(raw: bytes | str) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except ValueError:
        raise InvalidInput("an ACP message is one JSON-RPC object") from None
    if not isinstance(message, dict):
        raise InvalidInput("an ACP message is one JSON-RPC object (no batches)")
    return message


async def _connect(
    state: Any, caller: Caller, message: dict[str, Any], agent: str | None
) -> tuple[str, dict[str, Any]]:
    """`initialize`: the connection made, and the answer to it."""
    if message.get("method") != "initialize" or "id" not in message:
        raise InvalidInput("the first ACP message of a connection is the `initialize` request")
    check_agent_name(agent, state.settings)
    params = message.get("params")
    caps = params.get("clientCapabilities") if isinstance(params, dict) else None
    connection_id = secrets.token_hex(16)
    await connections_of(state).create(
        AcpConnection(connection_id, caller.tenant, agent, caps if isinstance(caps, dict) else {})
    )
    result = {
        "protocolVersion": PROTOCOL_VERSION,
        "agentCapabilities": capabilities(),
        "authMethods": [],
        "agentInfo": {"name": "tokentail", "version": version()},  # (read once: it parses the metadata)
    }
    return connection_id, response(message["id"], result)


async def _connection(state: Any, caller: Caller, connection_id: str | None) -> AcpConnection:
    """The caller's connection of that id: another tenant's, or one forgotten, is not found (404)."""
    connection = await connections_of(state).get(connection_id) if connection_id else None
    if connection is None or connection.tenant != caller.tenant:
        raise SessionNotFound(f"ACP connection {connection_id!r}")
    return connection


@router.post("/acp")
async def post(request: Request, caller: CallerDep) -> Response:
    message = _message(await request.body())
    state, connection_id = request.app.state, request.headers.get(CONNECTION_HEADER)
    if message.get("method") == "initialize" and connection_id is None:
        made, answer = await _connect(state, caller, message, request.query_params.get("agent"))
        return JSONResponse(answer, headers={CONNECTION_HEADER: made})
    connection = await _connection(state, caller, connection_id)
    methods = AcpMethods(run_commands(RunCommands, request, caller), connections_of(state), connection)
    await methods.handle(message)
    return Response(status_code=202)


@router.delete("/acp")
async def delete(request: Request, caller: CallerDep) -> Response:
    connection_id = request.headers.get(CONNECTION_HEADER)
    with contextlib.suppress(SessionNotFound):  # (ended already: as good as ended now)
        await _connection(request.app.state, caller, connection_id)
        await connections_of(request.app.state).delete(connection_id or "")
    return Response(status_code=202)


def _frames(sent: Sent) -> bytes:
    """SSE frames, the messages in compact JSON (ASCII: a client may decode each chunk it reads apart)."""
    if sent is None:
        return b": keepalive\n\n"
    return "".join(
        f"id: {event_id}\ndata: {_compact(message)}\n\n" if event_id else f"data: {_compact(message)}\n\n"
        for message, event_id in sent
    ).encode()


_ASCII_COMPACT = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps makes one a call


def _compact(message: dict[str, Any]) -> str:
    return _ASCII_COMPACT.encode(message)


@router.get("/acp")
async def stream(request: Request, caller: CallerDep) -> Response:
    """The connection's stream, or (`Acp-Session-Id`) one of its sessions', after `Last-Event-ID`."""
    accept = request.headers.get("accept", "")
    if "text/event-stream" not in accept and "*/*" not in accept:
        return JSONResponse({"error": "GET /acp is an event stream: Accept: text/event-stream"}, status_code=406)
    state = request.app.state
    connection = await _connection(state, caller, request.headers.get(CONNECTION_HEADER))
    session_id, last = request.headers.get(SESSION_HEADER), request.headers.get("last-event-id")
    if session_id is not None:
        await state.auth.check_access(caller, session_id, state.store)
    slot = await state.stream_slots.take(caller.tenant, caller.session_id)

    async def frames() -> AsyncGenerator[bytes, None]:
        async for sent in _sent(state, connection, session_id, last):
            yield _frames(sent)

    # (`: open`: the headers go now: a client waits for them before it posts to the session)
    release = functools.partial(state.stream_slots.release, slot)
    return ByteStreamResponse(frames(), "text/event-stream", b": open\n\n", SSE_HEADERS, on_close=release)


async def _sent(state: Any, connection: AcpConnection, session_id: str | None, last: str | None) -> AsyncIterator[Sent]:
    connections, connection_id = connections_of(state), connection.connection_id
    if session_id is None:
        async for sent in outbox(state.hub, connections, connection_id, last or "0"):
            yield sent
        return
    after = int(last) if last and last.isdigit() else None
    if after is None:
        async for place in session_place(state.hub, connections, connection_id, session_id):
            if place is None:
                yield None
            after = place
    if after is not None:
        async for sent in session_messages(state.hub, state.settings, connections, connection, session_id, after):
            yield sent


@router.websocket("/acp")
async def socket(websocket: WebSocket) -> None:
    """One connection on one socket: its first frame `initialize`; it ends with the socket (1002: it did
    not start with `initialize`; 1008: refused, the reason in the close). Frames have the REST API's
    bound (`max_request_bytes`); one that is not a JSON object within it is left unanswered, as every
    socket of the gateway leaves it (socket_tasks.py)."""
    state = websocket.app.state
    await websocket.accept()
    frames = socket_tasks.json_frames(websocket, state.settings.max_request_bytes)
    try:
        caller = state.auth.authenticate(
            bearer_credential(websocket.headers.get("authorization")), websocket.query_params.get("token")
        )
        first = await anext(frames, None)
        if first is None:
            return
        connection_id, answer = await _connect(state, caller, first, websocket.query_params.get("agent"))
        slot = await state.stream_slots.take(caller.tenant, caller.session_id)
    except TokentailError as exc:
        await websocket.close(code=1002 if isinstance(exc, InvalidInput) else 1008, reason=str(exc)[:120])
        return
    await websocket.send_text(json.dumps(answer))
    try:
        await _converse(websocket, caller, connection_id, frames)
    finally:
        await connections_of(state).delete(connection_id)
        await state.stream_slots.release(slot)


async def _converse(
    websocket: WebSocket, caller: Caller, connection_id: str, frames: AsyncIterator[dict[str, Any]]
) -> None:
    """The socket's messages, each handled in turn, while what the connection is sent goes out: its
    outbox, and each session it shows from when it shows it."""
    state = websocket.app.state
    connections = connections_of(state)
    connection = await _connection(state, caller, connection_id)
    methods = AcpMethods(run_commands(RunCommands, websocket, caller), connections, connection)
    sending = asyncio.Lock()

    async def pump(source: AsyncIterator[Sent]) -> None:
        async for sent in source:
            async with sending:
                for message, _ in sent or ():  # (one message a frame, as ACP's sockets send them)
                    await websocket.send_text(_compact(message))

    pumps = {"": asyncio.create_task(pump(outbox(state.hub, connections, connection_id)))}
    try:
        async for message in frames:
            # (A request's refusal is its JSON-RPC error; an answer to a question the caller may not answer
            # has no one to be told of it, as over HTTP it is the POST's status.)
            with contextlib.suppress(TokentailError):
                await methods.handle(message)
            for session_id, after in list(connection.sessions.items()):
                if session_id not in pumps:
                    messages = session_messages(state.hub, state.settings, connections, connection, session_id, after)
                    pumps[session_id] = asyncio.create_task(pump(messages))
    finally:
        for task in pumps.values():
            task.cancel()
        await asyncio.gather(*pumps.values(), return_exceptions=True)
