"""FastAPI dependencies: the clients and settings the app's lifespan opened, who is calling, and
the session a route acts on.

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, a cost paid on every
request for what is only an attribute lookup. They take an `HTTPConnection`, so WebSocket routes
use them too.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Path
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection, Request

from tokentail.gateway.access.auth import Authenticator, Caller
from tokentail.gateway.access.ids import CHAT_ID_PATTERN
from tokentail.gateway.access.limits import RequestsInFlight, RunBudget, StreamSlots
from tokentail.gateway.commands.tasks import RunTasks
from tokentail.gateway.commands.turns import ChatTurns, RunCommands
from tokentail.gateway.commands.webhook_urls import SessionWebhooks
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.shutdown import StreamShutdown
from tokentail.gateway.reading.streams import Streams
from tokentail.shared.features.admission import TenantLines
from tokentail.shared.features.agent_catalog import AgentDirectory
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore


def _app_state(name: str) -> Callable[[HTTPConnection], Awaitable[Any]]:
    """A dependency giving `app.state.<name>`: set by `create_app`, or by its lifespan."""

    async def dependency(connection: HTTPConnection) -> Any:
        return getattr(connection.app.state, name)

    return dependency


SettingsDep = Annotated[Settings, Depends(_app_state("settings"))]
StoreDep = Annotated[SessionStore, Depends(_app_state("store"))]
RunsDep = Annotated[SessionWrites, Depends(_app_state("runs"))]
HubDep = Annotated[StreamHub, Depends(_app_state("hub"))]
ShutdownDep = Annotated[StreamShutdown, Depends(_app_state("shutdown"))]
AuthDep = Annotated[Authenticator, Depends(_app_state("auth"))]
RunBudgetDep = Annotated[RunBudget, Depends(_app_state("run_budget"))]
TenantLinesDep = Annotated[TenantLines, Depends(_app_state("tenant_lines"))]
StreamSlotsDep = Annotated[StreamSlots, Depends(_app_state("stream_slots"))]
ChatRequestsDep = Annotated[RequestsInFlight, Depends(_app_state("chat_requests"))]
WebhooksDep = Annotated[SessionWebhooks, Depends(_app_state("webhooks"))]
AgentsDep = Annotated[AgentDirectory, Depends(_app_state("agents"))]

# These two also document the credentials in the OpenAPI schema.
bearer_credentials = HTTPBearer(
    auto_error=False, description="an API key, or a stream token (one session: read, or chat)"
)
query_token = APIKeyQuery(
    name="token", auto_error=False, description="a stream token, for clients that cannot send headers (EventSource)"
)


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_credentials)]
QueryToken = Annotated[str | None, Depends(query_token)]
# Who calls, as a plain function of the request and its two credentials: a route's one dependency
# (below), which the hot routes call as FastAPI does (gateway/hot_routes.py).
CallerOf = Callable[[HTTPConnection, HTTPAuthorizationCredentials | None, str | None], Awaitable[Caller]]


async def authenticated_caller(connection: HTTPConnection, bearer: Bearer, token: QueryToken) -> Caller:
    auth: Authenticator = connection.app.state.auth
    return auth.authenticate(bearer.credentials if bearer else None, token)


def _caller_who(requirement: Callable[[Caller], None]) -> CallerOf:
    """The caller, if it meets `requirement` (which raises Forbidden otherwise)."""

    async def caller_who(connection: HTTPConnection, bearer: Bearer, token: QueryToken) -> Caller:
        caller = await authenticated_caller(connection, bearer, token)
        requirement(caller)
        return caller

    return caller_who


api_key_caller = _caller_who(Caller.require_api_key)
chat_caller = _caller_who(Caller.require_chat)  # queue and cancel runs: an API key, or a chat token


@dataclass(frozen=True, slots=True)
class Access:
    """A caller, and the session of the request's path it may use."""

    caller: Caller
    session_id: str


def _session_access(who: CallerOf) -> Callable[..., Awaitable[Access]]:
    """The path's `{session_id}`, if the caller `who` gives may use it."""

    async def access(request: Request, session_id: str, bearer: Bearer, token: QueryToken) -> Access:
        caller = await who(request, bearer, token)
        state = request.app.state
        await state.auth.check_access(caller, session_id, state.store)
        return Access(caller, session_id)

    return access


readable_session = _session_access(authenticated_caller)  # its tenant's API key, or a stream token for it
chat_session = _session_access(chat_caller)  # an API key, or a chat token for it
owned_session = _session_access(api_key_caller)  # an API key

CallerDep = Annotated[Caller, Depends(authenticated_caller)]
ApiKeyCallerDep = Annotated[Caller, Depends(api_key_caller)]
ChatCallerDep = Annotated[Caller, Depends(chat_caller)]
ReadableSessionDep = Annotated[Access, Depends(readable_session)]
ChatSessionDep = Annotated[Access, Depends(chat_session)]
OwnedSessionDep = Annotated[Access, Depends(owned_session)]


# A chat id in a path, as the routes take it (also what the OpenAPI document says of it).
ChatIdPath = Annotated[
    str, Path(pattern=CHAT_ID_PATTERN, description="the chat id your frontend chose (useChat `id`, AG-UI `threadId`)")
]


def _chat_of(who: Callable[..., Awaitable[Caller]]) -> Callable[..., Awaitable[str]]:
    """The session of the path's `{chat_id}`, if the caller `who` gives may use it."""

    async def dependency(
        chat_id: ChatIdPath, auth: AuthDep, store: StoreDep, caller: Annotated[Caller, Depends(who)]
    ) -> str:
        return await auth.chat_session(caller, chat_id, store)

    return dependency


# A request's `Idempotency-Key`: sent again with the same key, it names the same session or run, made
# once (gateway/access/ids.py `idempotent_id`), so a client may resend a write whose answer it lost.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
IdempotencyKeyDep = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="makes the request safe to send again: the same key names the same session or run (1-255"
        " printable ASCII characters; a UUID)",
    ),
]

# The session of the path's `{chat_id}`, which the caller may read, or chat in.
ReadableChatDep = Annotated[str, Depends(_chat_of(authenticated_caller))]
ChattingChatDep = Annotated[str, Depends(_chat_of(chat_caller))]


def streams_for(connection: HTTPConnection, caller: Caller) -> Streams:
    """Opening streams of the app's for `caller`."""
    state = connection.app.state
    return Streams(caller, state.store, state.hub, state.settings, state.stream_slots)


async def _streams(connection: HTTPConnection, caller: CallerDep) -> Streams:
    return streams_for(connection, caller)


Commands = TypeVar("Commands", bound=RunCommands)


def run_commands(kind: type[Commands], connection: HTTPConnection, caller: Caller) -> Commands:
    """`kind` (a RunCommands) of the app's, for `caller`."""
    state = connection.app.state
    return kind(caller, state.auth, state.store, state.runs, state.settings, state.run_budget, state.webhooks)


def commands_for(kind: type[Commands], who: Callable[..., Awaitable[Caller]]) -> Callable[..., Awaitable[Commands]]:
    """A dependency: `kind` for the caller `who` gives."""

    async def dependency(connection: HTTPConnection, caller: Annotated[Caller, Depends(who)]) -> Commands:
        return run_commands(kind, connection, caller)

    return dependency


# Opening a session's stream for the caller, in any encoding; what a chat UI sends (a chat token or
# an API key).
StreamsDep = Annotated[Streams, Depends(_streams)]
ChatTurnsDep = Annotated[ChatTurns, Depends(commands_for(ChatTurns, chat_caller))]
# The agent protocols' tasks (MCP, A2A): an API key's tenant (every caller, with auth off).
TasksDep = Annotated[RunTasks, Depends(commands_for(RunTasks, api_key_caller))]
