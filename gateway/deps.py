"""FastAPI dependencies: the clients and settings the app's lifespan opened, and who is calling.

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, a cost paid on every
request for what is only an attribute lookup. They take an `HTTPConnection`, so WebSocket routes
use them too.
"""

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from gateway.auth import Authenticator, Caller
from gateway.hub import StreamHub
from gateway.ids import CHAT_ID_PATTERN, chat_session_id
from gateway.limits import RunBudget, StreamSlots
from gateway.schemas import ErrorBody
from gateway.shutdown import StreamShutdown
from gateway.webhooks import SessionWebhooks
from shared.errors import InvalidInput
from shared.lifecycle import RunLifecycle
from shared.logs import bind
from shared.settings import Settings
from shared.store import SessionStore


def _app_state(name: str) -> Callable[[HTTPConnection], Awaitable[Any]]:
    """A dependency giving `app.state.<name>`: set by `create_app`, or by its lifespan."""

    async def dependency(connection: HTTPConnection) -> Any:
        return getattr(connection.app.state, name)

    return dependency


SettingsDep = Annotated[Settings, Depends(_app_state("settings"))]
StoreDep = Annotated[SessionStore, Depends(_app_state("store"))]
RunsDep = Annotated[RunLifecycle, Depends(_app_state("runs"))]
HubDep = Annotated[StreamHub, Depends(_app_state("hub"))]
ShutdownDep = Annotated[StreamShutdown, Depends(_app_state("shutdown"))]
AuthDep = Annotated[Authenticator, Depends(_app_state("auth"))]
RunBudgetDep = Annotated[RunBudget, Depends(_app_state("run_budget"))]
StreamSlotsDep = Annotated[StreamSlots, Depends(_app_state("stream_slots"))]
WebhooksDep = Annotated[SessionWebhooks, Depends(_app_state("webhooks"))]

# These two also document the credentials in the OpenAPI schema.
_bearer = HTTPBearer(auto_error=False, description="an API key, or a stream token (one session: read, or chat)")
_token_query = APIKeyQuery(
    name="token", auto_error=False, description="a stream token, for clients that cannot send headers (EventSource)"
)


async def _caller(
    auth: AuthDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Depends(_token_query)],
) -> Caller:
    return auth.authenticate(bearer.credentials if bearer else None, token)


CallerDep = Annotated[Caller, Depends(_caller)]


async def _api_key_caller(caller: CallerDep) -> Caller:
    caller.require_api_key()
    return caller


ApiKeyCallerDep = Annotated[Caller, Depends(_api_key_caller)]


async def _chat_caller(caller: CallerDep) -> Caller:
    caller.require_chat()
    return caller


ChatCallerDep = Annotated[Caller, Depends(_chat_caller)]


async def _readable_session(session_id: str, caller: CallerDep, auth: AuthDep, store: StoreDep) -> str:
    await auth.check_access(caller, session_id, store)
    bind(session_id=session_id)
    return session_id


async def _owned_session(session_id: str, caller: ApiKeyCallerDep, auth: AuthDep, store: StoreDep) -> str:
    await auth.check_access(caller, session_id, store)
    bind(session_id=session_id)
    return session_id


async def _chat_session(session_id: str, caller: ChatCallerDep, auth: AuthDep, store: StoreDep) -> str:
    await auth.check_access(caller, session_id, store)
    bind(session_id=session_id)
    return session_id


# A session the caller may read (API key of its tenant, or a stream token for it), chat in (queue and
# cancel runs: API key, or a chat token for it) or change (API key).
ReadableSessionDep = Annotated[str, Depends(_readable_session)]
ChatSessionDep = Annotated[str, Depends(_chat_session)]
OwnedSessionDep = Annotated[str, Depends(_owned_session)]


async def chat_session(chat_id: str, caller: Caller, auth: Authenticator, store: SessionStore) -> str:
    """The session of a chat id a chat UI chose (see `chat_session_id`), if the caller may use it."""
    if re.fullmatch(CHAT_ID_PATTERN, chat_id) is None:
        raise InvalidInput("a chat id is 1 to 128 characters of A-Z, a-z, 0-9 and _ . : -")
    session_id = chat_session_id(caller.tenant, chat_id)
    await auth.check_access(caller, session_id, store)
    bind(session_id=session_id)
    return session_id


async def _readable_chat(chat_id: str, caller: CallerDep, auth: AuthDep, store: StoreDep) -> str:
    return await chat_session(chat_id, caller, auth, store)


async def _chatting_chat(chat_id: str, caller: ChatCallerDep, auth: AuthDep, store: StoreDep) -> str:
    return await chat_session(chat_id, caller, auth, store)


# The session of the path's `{chat_id}`, which the caller may read, or chat in.
ReadableChatDep = Annotated[str, Depends(_readable_chat)]
ChattingChatDep = Annotated[str, Depends(_chatting_chat)]

# For the OpenAPI schema: the error statuses of the session routes share one body.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 410, 413, 422, 429)
}
