"""FastAPI dependencies: the clients and settings the app's lifespan opened, and who is calling.

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, a cost paid on every
request for what is only an attribute lookup. They take an `HTTPConnection`, so WebSocket routes
use them too.
"""

from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from gateway.auth import Authenticator, Caller
from gateway.limits import RunBudget, StreamSlots
from gateway.schemas import ErrorBody
from gateway.shutdown import StreamShutdown
from gateway.tail import StreamTail
from shared.logs import bind
from shared.settings import Settings
from shared.store import SessionStore


async def _settings(connection: HTTPConnection) -> Settings:
    settings: Settings = connection.app.state.settings
    return settings


async def _store(connection: HTTPConnection) -> SessionStore:
    store: SessionStore = connection.app.state.store
    return store


async def _tail(connection: HTTPConnection) -> StreamTail:
    tail: StreamTail = connection.app.state.tail
    return tail


async def _shutdown(connection: HTTPConnection) -> StreamShutdown:
    shutdown: StreamShutdown = connection.app.state.shutdown
    return shutdown


async def _authenticator(connection: HTTPConnection) -> Authenticator:
    auth: Authenticator = connection.app.state.auth
    return auth


async def _run_budget(connection: HTTPConnection) -> RunBudget:
    budget: RunBudget = connection.app.state.run_budget
    return budget


async def _stream_slots(connection: HTTPConnection) -> StreamSlots:
    slots: StreamSlots = connection.app.state.stream_slots
    return slots


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[SessionStore, Depends(_store)]
TailDep = Annotated[StreamTail, Depends(_tail)]
ShutdownDep = Annotated[StreamShutdown, Depends(_shutdown)]
AuthDep = Annotated[Authenticator, Depends(_authenticator)]
RunBudgetDep = Annotated[RunBudget, Depends(_run_budget)]
StreamSlotsDep = Annotated[StreamSlots, Depends(_stream_slots)]

# These two also document the credentials in the OpenAPI schema.
_bearer = HTTPBearer(auto_error=False, description="an API key, or a stream token (read-only, one session)")
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


async def _readable_session(session_id: str, caller: CallerDep, auth: AuthDep, store: StoreDep) -> str:
    await auth.check_access(caller, session_id, store)
    bind(session_id=session_id)
    return session_id


async def _owned_session(session_id: str, caller: ApiKeyCallerDep, auth: AuthDep, store: StoreDep) -> str:
    await auth.check_access(caller, session_id, store)
    bind(session_id=session_id)
    return session_id


# A session the caller may read (API key of its tenant, or a stream token for it) or change (API key).
ReadableSessionDep = Annotated[str, Depends(_readable_session)]
OwnedSessionDep = Annotated[str, Depends(_owned_session)]

# For the OpenAPI schema: the error statuses of the session routes share one body.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 410, 413, 422, 429)
}
