"""A2A 1.0 (the JSON-RPC and HTTP+JSON bindings) for every agent of the deployment, on a2a-sdk's own
dispatchers, which call `TaskHandler` (gateway/protocols/a2a/handler.py) over tokentail's runs.

    GET  /.well-known/agent-card.json              the default agent's card
    GET  /a2a/{agent}/.well-known/agent-card.json  an agent's card
    POST /a2a/{agent}                              JSON-RPC: SendMessage, SendStreamingMessage, GetTask,
                                                   ListTasks, CancelTask, SubscribeToTask, and the
                                                   push notification configs' four methods
    ...  /a2a/{agent}/message:send, /tasks/...     the same as HTTP+JSON (a2a-sdk's REST routes)

The cards are public; every other request takes an API key (`Authorization: Bearer`), as the REST API
does, and sees its tenant's tasks only. These routes are left out of the OpenAPI document: A2A's
are described by the agent card and the A2A specification. docs/a2a.md has what maps to what.

The routes are declared as the gateway starts; what answers them (the cards, the SDK's dispatchers:
gateway/protocols/a2a/dispatch.py) is imported by the first A2A request, in a thread, so a gateway never
called over A2A does not import a2a-sdk (a sixth of a gateway's start). This module imports nothing of it.
"""

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tokentail.gateway.deps import AgentsDep, HubDep, SettingsDep, StreamsDep, TasksDep
from tokentail.gateway.protocols.a2a.parts import HandlerParts
from tokentail.gateway.reading.response import ClientLeft, unless_left
from tokentail.shared.features.agent_catalog import AgentInfo
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.catalog import DEFAULT_AGENT
from tokentail.shared.vocabulary.errors import InvalidInput

if TYPE_CHECKING:
    from tokentail.gateway.protocols.a2a.dispatch import Dispatch

router = APIRouter(include_in_schema=False)

_dispatch: "type[Dispatch] | None" = None  # once imported: later requests go straight to it


async def dispatch() -> "type[Dispatch]":
    """What answers A2A's requests, imported by the first (in a thread: the other streams go on meanwhile).
    Requests that come together before it is imported each wait in a thread of their own for the same
    import: Python's import lock runs the module once."""
    global _dispatch
    if _dispatch is None:
        _dispatch = await asyncio.to_thread(_imported)
    return _dispatch


def _imported() -> "type[Dispatch]":
    from tokentail.gateway.protocols.a2a.dispatch import Dispatch  # the SDK: imported here only

    return Dispatch


async def _agent(agent: str, agents: AgentsDep) -> AgentInfo:
    try:
        return await agents.get(agent)
    except InvalidInput as exc:
        raise HTTPException(404, str(exc)) from None


AgentDep = Annotated[AgentInfo, Depends(_agent)]


async def _handler_parts(agent: AgentDep, tasks: TasksDep, hub: HubDep, streams: StreamsDep) -> HandlerParts:
    return HandlerParts(agent, tasks, hub, streams)


HandlerDep = Annotated[HandlerParts, Depends(_handler_parts)]


# -- the agent cards ------------------------------------------------------------------------------


async def _card_response(info: AgentInfo, request: Request, settings: Settings) -> JSONResponse:
    base_url = str(request.base_url).rstrip("/")
    return JSONResponse((await dispatch()).card(info, base_url, settings))


@router.get("/.well-known/agent-card.json")
async def default_agent_card(request: Request, agents: AgentsDep, settings: SettingsDep) -> JSONResponse:
    """The default agent's card (A2A's discovery at the server's root)."""
    return await _card_response(await agents.get(DEFAULT_AGENT), request, settings)


@router.get("/a2a/{agent}/.well-known/agent-card.json")
async def card_of_agent(agent: AgentDep, request: Request, settings: SettingsDep) -> JSONResponse:
    return await _card_response(agent, request, settings)


# -- JSON-RPC ---------------------------------------------------------------------------------------


async def _answer(request: Request, answering: Awaitable[Response]) -> Response:
    """A request's answer, unless its client leaves first (a blocking `SendMessage` waits for its
    task): then its wait ends, and the stream slot it holds is given back. Its task goes on."""
    await request.body()  # read now, for the dispatcher: what follows on `receive` is only the client leaving
    try:
        return await unless_left(request.receive, answering)
    except ClientLeft:
        return Response(status_code=499)  # nobody reads it


@router.post("/a2a/{agent}")
async def json_rpc(request: Request, parts: HandlerDep) -> Response:
    return await _answer(request, (await dispatch()).json_rpc(parts, request))


# -- HTTP+JSON: a2a-sdk's REST routes, in its order (a `:verb` path before the plain one it ends) ------

# Each route's method, path below /a2a/{agent}, and the `RestDispatcher` method that answers it (by name:
# the SDK is not imported yet; tests/unit/gateway/protocols/a2a/test_a2a.py checks each names one).
REST_ROUTES = (
    ("POST", "/message:send", "on_message_send"),
    ("POST", "/message:stream", "on_message_send_stream"),
    ("POST", "/tasks/{id}:cancel", "on_cancel_task"),
    ("GET", "/tasks/{id}:subscribe", "on_subscribe_to_task"),
    ("POST", "/tasks/{id}:subscribe", "on_subscribe_to_task"),
    ("GET", "/tasks/{id}", "on_get_task"),
    ("GET", "/tasks/{id}/pushNotificationConfigs/{push_id}", "get_push_notification"),
    ("DELETE", "/tasks/{id}/pushNotificationConfigs/{push_id}", "delete_push_notification"),
    ("POST", "/tasks/{id}/pushNotificationConfigs", "set_push_notification"),
    ("GET", "/tasks/{id}/pushNotificationConfigs", "list_push_notifications"),
    ("GET", "/tasks", "list_tasks"),
)


def _rest(method: str, path: str, endpoint: str) -> None:
    async def route(request: Request, parts: HandlerDep) -> Response:
        return await _answer(request, (await dispatch()).rest(endpoint, parts, request))

    router.add_api_route(f"/a2a/{{agent}}{path}", route, methods=[method], name=f"a2a {method} {path}")


for _method, _path, _endpoint in REST_ROUTES:
    _rest(_method, _path, _endpoint)
