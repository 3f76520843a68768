"""The events of a session stream: their names and data are the API clients rely on (docs/api.md
lists them), and each has a per-session id with no holes, starting at 1.

Workers serialise these models compactly (one line of JSON, never a raw newline), store them in the
stream as they are, and the gateway forwards the stored bytes without parsing them again.
"""

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_EVENT_BYTES = 262_144  # one event's stored JSON, a text delta aside (worker/writes/writer.py splits those)


class EventType(StrEnum):
    RUN_QUEUED = "run.queued"
    RUN_STARTED = "run.started"
    MESSAGE_DELTA = "message.delta"
    REASONING_DELTA = "reasoning.delta"
    STATUS = "status"
    TOOL_STARTED = "tool.started"
    TOOL_COMPLETED = "tool.completed"
    TOOL_FAILED = "tool.failed"
    RUN_RETRYING = "run.retrying"
    RUN_CONTINUED = "run.continued"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    INPUT_REQUIRED = "input.required"
    INPUT_RECEIVED = "input.received"
    STEER_ACCEPTED = "steer.accepted"
    STEER_APPLIED = "steer.applied"
    STEER_FAILED = "steer.failed"
    RUN_SPAWNED = "run.spawned"


CANCELLED_BY_REQUEST = "cancelled by request"  # the reason of a run cancelled through the API

TERMINAL_EVENTS = frozenset({EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED})

DATA_PREFIX = "data."  # `data.<name>`: an agent's own JSON, for UIs that render custom parts
DATA_NAME = r"^[A-Za-z0-9_-]{1,64}$"
AGENT_LABEL_CHARS = 128


class EventData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str


class RunQueued(EventData):
    input: str


# Why a run (re)started: its first start; a takeover, after the worker running it stopped (a new
# attempt, announced by `run.continued`, or `run.retrying` then `run.started` when it starts over);
# a resume, after the answer to its question (the same attempt); or a fork, the first start of a run
# that goes on in a fork of its session from one of its events (`from_event_id`).
StartReason = Literal["start", "takeover", "resume", "fork"]


class RunEventData(EventData):
    """A `run.*` event. A child run's (docs/subagents.md) names its parent; left out for a session's own runs."""

    parent_run_id: str | None = Field(default=None, exclude_if=lambda value: value is None)


class RunStarted(RunEventData):
    attempt: int  # 1, then one more at each takeover
    reason: StartReason = "start"
    # A fork's start (`reason: "fork"`): clients keep the run's events up to this id and drop those
    # after it, as after `run.continued` (0: all of them, the run starts over).
    from_event_id: int | None = Field(default=None, exclude_if=lambda value: value is None)


class SpawnCause(BaseModel):
    """Why a child run started: the parent's call (`call_id`: its tool call, or the spawn's own id)."""

    type: Literal["tool_call"] = "tool_call"
    call_id: str


class RunSpawned(RunEventData):
    """A run started a child run (`run_id`) in this session (docs/subagents.md): the child's own events
    carry its `run_id`, its `run.*` events also `parent_run_id`. No `run.queued` comes for it."""

    parent_run_id: str  # always there
    agent: str
    name: str
    input: str
    cause: SpawnCause


class AgentEventData(EventData):
    """An event an agent makes. `agent` names the sub-agent or parallel branch that made it, when
    several stream into one run side by side (a LangGraph subgraph, an OpenAI Agents handoff); the
    stream leaves it out when it is None."""

    agent: str | None = Field(default=None, max_length=AGENT_LABEL_CHARS, exclude_if=lambda value: value is None)


class MessageDelta(AgentEventData):
    text: str


class ReasoningDelta(AgentEventData):
    text: str  # thinking or reasoning text: shown apart from the answer, never part of `output`


class Status(AgentEventData):
    text: str


class CustomData(AgentEventData):
    """`data.<name>`: the stream keeps `name` in the event's type, and `data` as the agent gave it."""

    name: str = Field(exclude=True, pattern=DATA_NAME)
    data: Any


class ToolStarted(AgentEventData):
    call_id: str
    name: str
    arguments: dict[str, Any]


class ToolCompleted(AgentEventData):
    call_id: str
    result: Any
    duration_ms: int


class ToolFailed(AgentEventData):
    call_id: str
    error: str
    duration_ms: int
    # A person denied the call (an approval answered no): the tool did not run. Left out when false.
    denied: bool = Field(default=False, exclude_if=lambda value: not value)


class RunRetrying(RunEventData):
    attempt: int
    reason: str


class RunContinued(RunEventData):
    """A taken-over run goes on from its record as attempt `attempt`. Clients keep this run's events
    up to `from_event_id` and drop those after it (the text of a model turn cut by the crash, when
    its provider cannot continue it); with nothing to drop, `from_event_id` is the run's last event."""

    attempt: int
    from_event_id: int


class RunCompleted(RunEventData):
    output: str
    usage: dict[str, Any]


class ErrorInfo(BaseModel):
    type: str
    message: str


class RunFailed(RunEventData):
    error: ErrorInfo
    # What the run spent before it failed (worker/run/usage.py); left out when the worker did not count it.
    usage: dict[str, Any] | None = Field(default=None, exclude_if=lambda value: value is None)


class RunCancelled(RunEventData):
    reason: str
    # What the run spent before it was cancelled; left out when no worker held it (still queued).
    usage: dict[str, Any] | None = Field(default=None, exclude_if=lambda value: value is None)


InputKind = Literal["approval", "choice", "text", "json"]


class ClientRequest(BaseModel):
    """What a question asks of the client's own program rather than of a person (an editor's: ACP's
    `fs/read_text_file`, `fs/write_text_file`, `terminal/*`; docs/acp.md): its method and params. The
    client's result is the answer; a client that cannot serve it leaves it to expire."""

    method: str
    params: dict[str, Any] = Field(default_factory=dict)


class InputRequired(EventData):
    """The run asks a person and waits: `schema` (JSON Schema) is what an answer must match."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    input_id: str
    kind: InputKind
    prompt: str
    answer_schema: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    expires_at: float | None = Field(default=None, exclude_if=lambda value: value is None)
    call_id: str | None = Field(default=None, exclude_if=lambda value: value is None)  # the tool call to approve
    # Questions asked at once (ctx.ask called concurrently) are consecutive events: how many follow this
    # one. A client shows them together; a protocol's response that ends at questions ends at the last.
    more: int = Field(default=0, exclude_if=lambda value: value == 0)
    client: ClientRequest | None = Field(default=None, exclude_if=lambda value: value is None)


class InputReceived(EventData):
    input_id: str
    answer: Any
    # The questions asked with it still unanswered: the run goes on at the answer that leaves none.
    waiting_for: list[str] = Field(default_factory=list, exclude_if=lambda value: not value)


class SteerAccepted(EventData):
    """Input for the run while it runs (a steer), stored: its agent takes it in at its next boundary."""

    steer_id: str
    input: str


class SteerApplied(EventData):
    """The run's agent took the steer in (the commit point: never applied twice)."""

    steer_id: str


SteerFailure = Literal["run_ended", "not_supported"]


class SteerFailed(EventData):
    """The steer will not be applied: the run ended first, or its agent takes no steers."""

    steer_id: str
    reason: SteerFailure


Ending = RunCompleted | RunFailed | RunCancelled  # what a run's terminal event holds


EVENT_DATA: dict[EventType, type[EventData]] = {
    EventType.RUN_QUEUED: RunQueued,
    EventType.RUN_STARTED: RunStarted,
    EventType.MESSAGE_DELTA: MessageDelta,
    EventType.REASONING_DELTA: ReasoningDelta,
    EventType.STATUS: Status,
    EventType.TOOL_STARTED: ToolStarted,
    EventType.TOOL_COMPLETED: ToolCompleted,
    EventType.TOOL_FAILED: ToolFailed,
    EventType.RUN_RETRYING: RunRetrying,
    EventType.RUN_CONTINUED: RunContinued,
    EventType.RUN_COMPLETED: RunCompleted,
    EventType.RUN_FAILED: RunFailed,
    EventType.RUN_CANCELLED: RunCancelled,
    EventType.INPUT_REQUIRED: InputRequired,
    EventType.INPUT_RECEIVED: InputReceived,
    EventType.STEER_ACCEPTED: SteerAccepted,
    EventType.STEER_APPLIED: SteerApplied,
    EventType.STEER_FAILED: SteerFailed,
    EventType.RUN_SPAWNED: RunSpawned,
}


def event_type_of(data: EventData) -> str:
    if isinstance(data, CustomData):
        return DATA_PREFIX + data.name
    for event_type, model in EVENT_DATA.items():
        if type(data) is model:
            return event_type
    raise TypeError(f"{type(data).__name__} is not an event")


class Gap(BaseModel):
    """Made by the gateway, never stored: the asked position is not (or no longer) in the stream."""

    reason: Literal["trimmed", "expired", "unknown_id"]
    first_available: int


class Event(BaseModel):
    """One event as a client sees it: the SSE `id`, `event` and parsed `data` (gap frames: no id)."""

    id: int | None
    event: str
    data: dict[str, Any]

    def typed(self) -> EventData | Gap:
        """`data` as its model (`MessageDelta`, `RunCompleted`, `CustomData`, ..., or `Gap`)."""
        if self.event == "gap":
            return Gap.model_validate(self.data)
        if self.event.startswith(DATA_PREFIX):
            return CustomData.model_validate({**self.data, "name": self.event.removeprefix(DATA_PREFIX)})
        return EVENT_DATA[EventType(self.event)].model_validate(self.data)

    @property
    def ends_run(self) -> bool:
        return self.event in TERMINAL_EVENTS
