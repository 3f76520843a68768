"""The AG-UI capabilities document (`GET /v1/ag-ui/capabilities`, `HttpAgent.getCapabilities()`).

AG-UI declares `transport.resumable` and `transport.pushNotifications` and leaves their mechanism to
the agent ("an agent MAY declare them for a transport of its own"); tokentail's is described under
`custom.tokentail`, which a consumer keeps as it is. The binding: docs/ag-ui-resume.md.
"""

from typing import Any

from ag_ui.core import (
    AgentCapabilities,
    HumanInTheLoopCapabilities,
    IdentityCapabilities,
    MultiAgentCapabilities,
    ReasoningCapabilities,
    StateCapabilities,
    ToolsCapabilities,
    TransportCapabilities,
)

from tokentail.gateway.protocols.ag_ui.render import PROTOCOL_VERSION
from tokentail.shared.plumbing.settings import Settings

RESUME = {
    "eventIds": "every SSE frame has an `id:`: a stored event's id on its last frame, `<id>.<k>` on the ones before",
    "reconnect": "send the same POST /v1/ag-ui again with `Last-Event-ID`: the rest of that run, nothing written; "
    "sent again before any id, the same run from its start (a resume[] sent so is stale: join it instead)",
    "join": "GET /v1/ag-ui?runId=<the runId posted>&offset=-1 (from the run's start) or `now`; "
    "`Last-Event-ID` wins over `offset`",
    "thread": "GET /v1/ag-ui/{threadId} with `Last-Event-ID`: the thread's runs after it, several on one stream; "
    "without: the active run from its start, its RUN_STARTED followed by a MESSAGES_SNAPSHOT of the thread",
    "anyReplica": True,
}


def capabilities_of(settings: Settings) -> dict[str, Any]:
    push = bool(settings.webhook_allowed_urls)  # webhooks are off while no URL is allowed
    capabilities = AgentCapabilities(
        identity=IdentityCapabilities(
            name="tokentail",
            type="gateway",
            description="durable, resumable agent runs from a Redis Stream per thread",
            metadata={"protocolVersion": PROTOCOL_VERSION},
        ),
        transport=TransportCapabilities(
            streaming=True, websocket=False, http_binary=False, push_notifications=push, resumable=True
        ),
        tools=ToolsCapabilities(supported=True, parallel_calls=True, client_provided=False),
        state=StateCapabilities(snapshots=False, deltas=False, memory=True, persistent_state=True),
        reasoning=ReasoningCapabilities(supported=True, streaming=True, encrypted=False),
        human_in_the_loop=HumanInTheLoopCapabilities(supported=True, approvals=True, interrupts=True),
        # A run may start child runs (docs/subagents.md), streamed as AG-UI subagents. `subagents` is
        # AG-UI's list of the agents one may invoke (definitions, not a flag): left undeclared, as
        # which agents a run delegates to is its agent's (`agents` in its params), not the endpoint's.
        multi_agent=MultiAgentCapabilities(supported=True, delegation=True),
        custom={
            "tokentail": {
                "resume": RESUME,
                "pushNotifications": {
                    "enabled": push,
                    "configure": "PUT /v1/webhook {url} (the tenant's; an API key) or POST /v1/sessions "
                    "{webhook}; the URL under one TOKENTAIL_WEBHOOK_ALLOWED_URLS lists",
                    "events": ["run.completed", "run.failed", "run.cancelled", "input.required"],
                    "signature": "Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature "
                    "(v1, HMAC-SHA256 with the secret GET /v1/webhook shows)",
                    "delivery": "at least once, in order per session; retried until a 2xx for "
                    "TOKENTAIL_WEBHOOK_RETRY_SECONDS; drop repeats by webhook-id",
                },
            }
        },
    )
    return capabilities.model_dump(by_alias=True, exclude_none=True)
