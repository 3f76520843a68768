"""a2a-sdk's side of A2A's routes (gateway/protocols/a2a/routes.py declares them and imports nothing of
the SDK): the agent cards, as the SDK writes them, and its dispatchers (JSON-RPC, HTTP+JSON) over
`TaskHandler` (gateway/protocols/a2a/handler.py). The first A2A request imports this module, and with it
the SDK (a sixth of a gateway's start), in a thread; a gateway never called over A2A never does.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

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
from fastapi import Request, Response

from tokentail.gateway.protocols.a2a.handler import TaskHandler
from tokentail.gateway.protocols.a2a.parts import HandlerParts
from tokentail.gateway.protocols.a2a.render import RESUME_EXTENSION, SUBTASKS_EXTENSION
from tokentail.shared.features.a2a_push import PushConfigs
from tokentail.shared.features.agent_catalog import AgentInfo
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.client_indexes import TaskIndex

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


class Dispatch:
    """The SDK's answers to A2A's routes, for gateway/protocols/a2a/routes.py to call."""

    @staticmethod
    def card(info: AgentInfo, base_url: str, settings: Settings) -> dict[str, Any]:
        """An agent's card as JSON, as the SDK writes it."""
        return agent_card_to_dict(agent_card(info, base_url, settings))

    @staticmethod
    def json_rpc(parts: HandlerParts, request: Request) -> Awaitable[Response]:
        """A JSON-RPC request's answer (a response, or a stream of events)."""
        return JsonRpcDispatcher(_task_handler(parts)).handle_requests(request)

    @staticmethod
    async def rest(endpoint: str, parts: HandlerParts, request: Request) -> Response:
        """An HTTP+JSON request's answer, from the `RestDispatcher` method named `endpoint`."""
        method: Callable[[RestDispatcher, Request], Awaitable[Response]] = getattr(RestDispatcher, endpoint)
        return _retry_after(await method(RestDispatcher(_task_handler(parts)), request))


def _task_handler(parts: HandlerParts) -> TaskHandler:
    tasks = parts.tasks
    settings, redis, keys = tasks.settings, tasks.runs.redis, tasks.runs.keys
    pushes = PushConfigs(redis, keys, settings.session_ttl_seconds)
    index = TaskIndex(redis, keys, settings.session_ttl_seconds)
    return TaskHandler(parts.agent, tasks, parts.hub, parts.streams, pushes, index)


def _retry_after(response: Response) -> Response:
    """A 429 (a tenant's limit: `LimitError`) with `Retry-After`, from the seconds its body's
    ErrorInfo gives: a2a-sdk writes the body of an error, and no header."""
    if response.status_code == 429:
        details = json.loads(bytes(response.body))["error"]["details"]
        response.headers["Retry-After"] = str(details[0]["metadata"]["retryAfter"])
    return response
