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
"""

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.server.routes.rest_dispatcher import RestDispatcher
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tokentail.gateway.deps import AgentsDep, HubDep, SettingsDep, StreamsDep, TasksDep
from tokentail.gateway.protocols.a2a.handler import TaskHandler
from tokentail.gateway.protocols.a2a.render import RESUME_EXTENSION, SUBTASKS_EXTENSION
from tokentail.gateway.reading.response import ClientLeft, unless_left
from tokentail.shared.features.a2a_push import PushConfigs
from tokentail.shared.features.agent_catalog import AgentInfo
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.client_indexes import TaskIndex
from tokentail.shared.vocabulary.catalog import DEFAULT_AGENT
from tokentail.shared.vocabulary.errors import InvalidInput

router = APIRouter(include_in_schema=False)

RESUME_DESCRIPTION = (
    "tokentail's resume cursor: every streamed event (and the Task) carries metadata"
    f"['{RESUME_EXTENSION}'] = {{eventId, generation}}, the A2A 1.1 draft's generation (1 when the task is"
    " made, one more per event); SubscribeToTask with the header `Last-Event-ID: <eventId>` sends the Task as"
    " it was then and every event after it, with none twice, also for a task that has ended since"
)
SUBTASKS_DESCRIPTION = (
    "tokentail's sub-tasks (docs/a2a.md): a run that starts runs of other agents has each as a task of the same"
    " context, whose first message names its parent's task in referenceTaskIds; the parent's Task and status"
    f" updates name its children in metadata['{SUBTASKS_EXTENSION}'].children (taskId, agent, name, state), a"
    " child's its parent in .parentTaskId; GetTask and SubscribeToTask read a child as any task; CancelTask of"
    " a task cancels every task below it (cascading cancel, as a2aproject/A2A#2119 proposes)"
)


async def _agent(agent: str, agents: AgentsDep) -> AgentInfo:
    try:
        return await agents.get(agent)
    except InvalidInput as exc:
        raise HTTPException(404, str(exc)) from None


AgentDep = Annotated[AgentInfo, Depends(_agent)]


async def _handler(agent: AgentDep, tasks: TasksDep, hub: HubDep, streams: StreamsDep) -> TaskHandler:
    settings, redis, keys = tasks.settings, tasks.runs.redis, tasks.runs.keys
    pushes = PushConfigs(redis, keys, settings.session_ttl_seconds)
    return TaskHandler(agent, tasks, hub, streams, pushes, TaskIndex(redis, keys, settings.session_ttl_seconds))


HandlerDep = Annotated[TaskHandler, Depends(_handler)]


# -- the agent cards ------------------------------------------------------------------------------


def agent_card(info: AgentInfo, base_url: str, settings: Settings) -> AgentCard:
    url = f"{base_url}/a2a/{info.name}"
    bindings = (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON)
    description = info.description or f"the tokentail agent {info.name!r}"
    modes = ["text/plain"] if info.takes_text else ["application/json"]
    card = AgentCard(
        name=info.name,
        description=description,
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=binding, protocol_version=PROTOCOL_VERSION_1_0)
            for binding in bindings
        ],
        capabilities=AgentCapabilities(
            streaming=True,
            push_notifications=bool(settings.webhook_allowed_urls),
            extensions=[
                AgentExtension(uri=RESUME_EXTENSION, description=RESUME_DESCRIPTION, required=False),
                AgentExtension(uri=SUBTASKS_EXTENSION, description=SUBTASKS_DESCRIPTION, required=False),
            ],
        ),
        default_input_modes=modes,
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(id=info.name, name=info.name, description=description, tags=["tokentail"], input_modes=modes)
        ],
    )
    if not info.takes_text:
        card.skills[0].examples.append(f"a data part matching: {info.input_schema}")
    if settings.auth_enabled:
        scheme = HTTPAuthSecurityScheme(scheme="Bearer", description="a tokentail API key")
        card.security_schemes["bearer"].CopyFrom(SecurityScheme(http_auth_security_scheme=scheme))
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList()}))
    return card


def _card_response(info: AgentInfo, request: Request, settings: Settings) -> JSONResponse:
    base_url = str(request.base_url).rstrip("/")
    return JSONResponse(agent_card_to_dict(agent_card(info, base_url, settings)))


@router.get("/.well-known/agent-card.json")
async def default_agent_card(request: Request, agents: AgentsDep, settings: SettingsDep) -> JSONResponse:
    """The default agent's card (A2A's discovery at the server's root)."""
    return _card_response(await agents.get(DEFAULT_AGENT), request, settings)


@router.get("/a2a/{agent}/.well-known/agent-card.json")
async def card_of_agent(agent: AgentDep, request: Request, settings: SettingsDep) -> JSONResponse:
    return _card_response(agent, request, settings)


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
async def json_rpc(request: Request, handler: HandlerDep) -> Response:
    return await _answer(request, JsonRpcDispatcher(handler).handle_requests(request))


# -- HTTP+JSON: a2a-sdk's REST routes, in its order (a `:verb` path before the plain one it ends) ------

Endpoint = Callable[[RestDispatcher, Request], Awaitable[Any]]


def _rest(method: str, path: str, endpoint: Endpoint) -> None:
    async def route(request: Request, handler: HandlerDep) -> Response:
        return _retry_after(await _answer(request, endpoint(RestDispatcher(handler), request)))

    router.add_api_route(f"/a2a/{{agent}}{path}", route, methods=[method], name=f"a2a {method} {path}")


def _retry_after(response: Response) -> Response:
    """A 429 (a tenant's limit: `LimitError`) with `Retry-After`, from the seconds its body's
    ErrorInfo gives: a2a-sdk writes the body of an error, and no header."""
    if response.status_code == 429:
        details = json.loads(bytes(response.body))["error"]["details"]
        response.headers["Retry-After"] = str(details[0]["metadata"]["retryAfter"])
    return response


_rest("POST", "/message:send", RestDispatcher.on_message_send)
_rest("POST", "/message:stream", RestDispatcher.on_message_send_stream)
_rest("POST", "/tasks/{id}:cancel", RestDispatcher.on_cancel_task)
_rest("GET", "/tasks/{id}:subscribe", RestDispatcher.on_subscribe_to_task)
_rest("POST", "/tasks/{id}:subscribe", RestDispatcher.on_subscribe_to_task)
_rest("GET", "/tasks/{id}", RestDispatcher.on_get_task)
_rest("GET", "/tasks/{id}/pushNotificationConfigs/{push_id}", RestDispatcher.get_push_notification)
_rest("DELETE", "/tasks/{id}/pushNotificationConfigs/{push_id}", RestDispatcher.delete_push_notification)
_rest("POST", "/tasks/{id}/pushNotificationConfigs", RestDispatcher.set_push_notification)
_rest("GET", "/tasks/{id}/pushNotificationConfigs", RestDispatcher.list_push_notifications)
_rest("GET", "/tasks", RestDispatcher.list_tasks)
