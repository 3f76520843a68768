"""What a request's `TaskHandler` (gateway/protocols/a2a/handler.py) is made of, as the routes
(gateway/protocols/a2a/routes.py) gather it without a2a-sdk, for the SDK's side (dispatch.py) to build it."""

from dataclasses import dataclass

from tokentail.gateway.commands.tasks import RunTasks
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.streams import Streams
from tokentail.shared.features.agent_catalog import AgentInfo


@dataclass(frozen=True)
class HandlerParts:
    """The agent called, and the calling tenant's tasks and streams."""

    agent: AgentInfo
    tasks: RunTasks
    hub: StreamHub
    streams: Streams
