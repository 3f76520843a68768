"""FastAPI dependencies: the clients and settings the app's lifespan opened, who is calling, and
the session a route acts on.

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, a cost paid on every
request for what is only an attribute lookup. They take an `HTTPConnection`, so WebSocket routes
use them too.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Path
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from tokentail.gateway.access.auth import Authenticator, Caller
from tokentail.gateway.access.ids import CHAT_ID_PATTERN
from tokentail.gateway.access.limits import RequestsInFlight, RunBudget, StreamSlots
from tokentail.gateway.commands.tasks import RunTasks
from tokentail.gateway.commands.turns import ChatTurns, RunCommands
from tokentail.gateway.commands.webhook_urls import SessionWebhooks
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.gateway.reading.finished import FinishedStreams
from tokentail.gateway.reading.hub import StreamHub
from tokentail.gateway.reading.shutdown import StreamShutdown
from tokentail.gateway.reading.streams import Streams
from tokentail.shared.agent_catalog import AgentDirectory
from tokentail.shared.settings import Settings
from tokentail.shared.store import SessionStore


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
StreamSlotsDep = Annotated[StreamSlots, Depends(_app_state("stream_slots"))]
ChatRequestsDep = Annotated[RequestsInFlight, Depends(_app_state("chat_requests"))]
WebhooksDep = Annotated[SessionWebhooks, Depends(_app_state("webhooks"))]
FinishedStreamsDep = Annotated[FinishedStreams, Depends(_app_state("finished_streams"))]
AgentsDep = Annotated[AgentDirectory, Depends(_app_state("agents"))]

# These two also document the credentials in the OpenAPI schema.
bearer_credentials = HTTPBearer(
    auto_error=False, description="an API key, or a stream token (one session: read, or chat)"
)
query_token = APIKeyQuery(
    name="token", auto_error=False, description="a stream token, for clients that cannot send headers (EventSource)"
)


async def authenticated_caller(
    auth: AuthDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_credentials)],
    token: Annotated[str | None, Depends(query_token)],
) -> Caller:
    return auth.authenticate(bearer.credentials if bearer else None, token)


def _caller_who(requirement: Callable[[Caller], None]) -> Callable[..., Awaitable[Caller]]:
    """The caller, if it meets `requirement` (which raises Forbidden otherwise)."""

    async def dependency(caller: Annotated[Caller, Depends(authenticated_caller)]) -> Caller:
        requirement(caller)
        return caller

    return dependency


_api_key_caller = _caller_who(Caller.require_api_key)
_chat_caller = _caller_who(Caller.require_chat)

CallerDep = Annotated[Caller, Depends(authenticated_caller)]
ApiKeyCallerDep = Annotated[Caller, Depends(_api_key_caller)]
ChatCallerDep = Annotated[Caller, Depends(_chat_caller)]


def _session_of(who: Callable[..., Awaitable[Caller]]) -> Callable[..., Awaitable[str]]:
    """The path's `{session_id}`, if the caller `who` gives may use it."""

    async def dependency(
        session_id: str, auth: AuthDep, store: StoreDep, caller: Annotated[Caller, Depends(who)]
    ) -> str:
        await auth.check_access(caller, session_id, store)
        return session_id

    return dependency


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

# A session the caller may read (API key of its tenant, or a stream token for it), chat in (queue and
# cancel runs: API key, or a chat token for it) or change (API key).
ReadableSessionDep = Annotated[str, Depends(_session_of(authenticated_caller))]
ChatSessionDep = Annotated[str, Depends(_session_of(_chat_caller))]
OwnedSessionDep = Annotated[str, Depends(_session_of(_api_key_caller))]
# The session of the path's `{chat_id}`, which the caller may read, or chat in.
ReadableChatDep = Annotated[str, Depends(_chat_of(authenticated_caller))]
ChattingChatDep = Annotated[str, Depends(_chat_of(_chat_caller))]


async def _streams(
    caller: CallerDep, store: StoreDep, hub: HubDep, settings: SettingsDep, slots: StreamSlotsDep
) -> Streams:
    return Streams(caller, store, hub, settings, slots)


Commands = TypeVar("Commands", bound=RunCommands)


def commands_for(kind: type[Commands], who: Callable[..., Awaitable[Caller]]) -> Callable[..., Awaitable[Commands]]:
    """`kind` (a RunCommands) for the caller `who` gives."""

    async def dependency(
        caller: Annotated[Caller, Depends(who)],
        auth: AuthDep,
        store: StoreDep,
        runs: RunsDep,
        settings: SettingsDep,
        budget: RunBudgetDep,
        webhooks: WebhooksDep,
    ) -> Commands:
        return kind(caller, auth, store, runs, settings, budget, webhooks)

    return dependency


# Opening a session's stream for the caller, in any encoding; what a chat UI sends (a chat token or
# an API key).
StreamsDep = Annotated[Streams, Depends(_streams)]
ChatTurnsDep = Annotated[ChatTurns, Depends(commands_for(ChatTurns, _chat_caller))]
# The agent protocols' tasks (MCP, A2A): an API key's tenant (every caller, with auth off).
TasksDep = Annotated[RunTasks, Depends(commands_for(RunTasks, _api_key_caller))]
