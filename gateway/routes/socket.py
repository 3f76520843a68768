"""The session's WebSocket, `GET /v1/sessions/{sid}/ws`: the same events as the SSE endpoint, plus
runs, cancels and answers from the client (its messages: gateway/encodings/websocket.py).

Credentials are those of the REST API: an API key or a stream token as a bearer header, or a
stream token as `?token=`; a read token reads, and `run`, `cancel` and `input` (the answer to a
run's question) need an API key or a chat token.
Messages have the REST API's limits (`max_request_bytes`, nesting, valid Unicode); a message that
breaks one, or is not a JSON object in a text frame, gets an error and the socket stays open.
Unlike an SSE stream, the socket stays open between runs. It closes with 4000 + the HTTP status of
a refusal (4401 bad credentials, 4403 another session's token, 4404/4410 unknown or gone session,
4400 bad `last_event_id`, 4429 too many streams), and 1012 when the gateway stops (the client
reconnects, to another replica, with its last id).
"""

from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from tokentail.gateway.access.auth import bearer_credential
from tokentail.gateway.deps import (
    AuthDep,
    HubDep,
    RunBudgetDep,
    RunsDep,
    SettingsDep,
    ShutdownDep,
    StoreDep,
    StreamSlotsDep,
)
from tokentail.gateway.encodings.websocket import Conversation, Socket
from tokentail.gateway.errors import describe
from tokentail.shared.vocabulary.errors import (
    InvalidInput,
    TokentailError,
)

router = APIRouter(prefix="/v1/sessions", tags=["events"])


@router.websocket("/{session_id}/ws")
async def session_socket(
    websocket: WebSocket,
    session_id: str,
    store: StoreDep,
    runs: RunsDep,
    hub: HubDep,
    shutdown: ShutdownDep,
    settings: SettingsDep,
    auth: AuthDep,
    slots: StreamSlotsDep,
    budget: RunBudgetDep,
    last_event_id: Annotated[str | None, Query()] = None,
    token: Annotated[str | None, Query()] = None,
    catch_up: Annotated[str | None, Query()] = None,
) -> None:
    # Accept first, so a refusal can say why (an error message, then a 4000 + status close code).
    await websocket.accept()
    socket = Socket(websocket)
    conversation: Conversation | None = None
    slot = None
    try:
        caller = auth.authenticate(bearer_credential(websocket.headers.get("authorization")), token)
        await auth.check_access(caller, session_id, store)
        slot = await slots.take(caller.tenant, caller.session_id)
        conversation = Conversation(socket, caller, session_id, store, runs, hub, settings, budget)
        if catch_up not in (None, "events", "snapshot"):
            raise InvalidInput("catch_up must be events or snapshot")
        await conversation.follow(last_event_id, catch_up)
        while (message := await conversation.next_message()) is not None:
            await conversation.handle(message)
        # The session went away, or the gateway is stopping: either way, the client moves on.
        await websocket.close(code=1012 if shutdown.started else 4410)
    except WebSocketDisconnect:
        pass
    except TokentailError as exc:
        # The HTTP status of the same refusal, in the 4000s close codes (404 -> 4404, 410 -> 4410).
        status, type_ = describe(exc)
        await socket.error(exc, type_)
        await websocket.close(code=4000 + status if status < 500 else 1011)
    finally:
        if conversation is not None:
            await conversation.stop_following()
        await slots.release(slot)
