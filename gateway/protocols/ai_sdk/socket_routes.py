"""The Vercel AI SDK's `WebSocketChatTransport` (v7) endpoint, `GET /v1/ai-sdk/chat/ws`: many chat
requests over one socket; the conversation's frames are gateway/protocols/ai_sdk/socket.py's.

As over HTTP, `abort` (the SDK's `stop()`) stops sending, not the run: `POST
/v1/ai-sdk/chat/{id}/stop` cancels it. Credentials: a bearer header, or `?token=` (a browser
WebSocket cannot send headers). The socket holds one of the tenant's stream slots, and at most
`max_chat_socket_requests` requests in flight (a stream token at most that many across its sockets):
one more is answered with an `error` frame. Each request in flight holds one more stream slot (a
refused one, an `error` frame, started nothing). A request whose `requestId` is reused is replaced: the
older one stops.
"""

import json
import logging
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket

from tokentail.gateway import socket_tasks
from tokentail.gateway.access.auth import bearer_credential
from tokentail.gateway.commands.turns import ChatTurns
from tokentail.gateway.deps import (
    AuthDep,
    ChatRequestsDep,
    SettingsDep,
    StreamSlotsDep,
    run_commands,
    streams_for,
)
from tokentail.gateway.errors import describe
from tokentail.gateway.protocols.ai_sdk.socket import ChatSocket
from tokentail.shared.vocabulary.errors import TokentailError

router = APIRouter()  # included first by routes.py's router, under its prefix
logger = logging.getLogger(__name__)


@router.websocket("/ws")
async def chat_socket(
    websocket: WebSocket,
    auth: AuthDep,
    settings: SettingsDep,
    slots: StreamSlotsDep,
    token_requests: ChatRequestsDep,
    token: Annotated[str | None, Query()] = None,
) -> None:
    await websocket.accept()
    try:
        caller = auth.authenticate(bearer_credential(websocket.headers.get("authorization")), token)
        slot = await slots.take(caller.tenant, caller.session_id)
    except TokentailError as exc:
        status, type_ = describe(exc)
        await websocket.send_text(json.dumps({"type": "error", "requestId": "", "errorText": f"{type_}: {exc}"}))
        await websocket.close(code=4000 + status if status < 500 else 1011)
        return
    chat = ChatSocket(
        websocket, streams_for(websocket, caller), run_commands(ChatTurns, websocket, caller), token_requests
    )
    try:
        async for frame in socket_tasks.json_frames(websocket, settings.max_request_bytes):
            await chat.take(frame)
    except Exception as exc:
        if not socket_tasks.closed_by_client(exc):
            raise
    finally:
        await chat.close()
        await slots.release(slot)
