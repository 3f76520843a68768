"""FastAPI dependencies: the clients and settings the app's lifespan opened.

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, a cost paid on every
request for what is only an attribute lookup. They take an `HTTPConnection`, so WebSocket routes
use them too.
"""

from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from gateway.schemas import ErrorBody
from gateway.shutdown import StreamShutdown
from gateway.tail import StreamTail
from shared.errors import SessionNotFound
from shared.ids import is_session_id
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


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[SessionStore, Depends(_store)]
TailDep = Annotated[StreamTail, Depends(_tail)]
ShutdownDep = Annotated[StreamShutdown, Depends(_shutdown)]


async def _session_id(session_id: str) -> str:
    # A malformed id is as unknown as a well-formed one that does not exist: 404 either way.
    if not is_session_id(session_id):
        raise SessionNotFound(session_id)
    return session_id


SessionIdDep = Annotated[str, Depends(_session_id)]

# For the OpenAPI schema: the error statuses of the session routes share one body.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (404, 409, 410, 413, 422)
}
