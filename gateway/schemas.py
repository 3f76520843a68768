"""Request and response bodies of the HTTP API."""

import json
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)

from tokentail.gateway.access.ids import CHAT_ID_PATTERN
from tokentail.gateway.access.tokens import Scope
from tokentail.shared.features.tenant_webhooks import WebhookFormat
from tokentail.shared.store.scripts.runs import Cancel
from tokentail.shared.vocabulary.catalog import parse_model
from tokentail.shared.vocabulary.params import RunParams
from tokentail.shared.vocabulary.records import ForkOrigin, Multitask, RunRecord, RunStatus, SessionStatus, Turn

MAX_NESTING = 32


def _nesting(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if depth > MAX_NESTING:
            break
    return depth


def check_storable(value: object) -> None:
    """A ValueError, saying why, unless `value` is JSON that UTF-8 (and so Redis) can carry: every
    route's bodies, and what any protocol hands on to be stored (an answer from MCP or AG-UI)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    except ValueError:
        raise ValueError("numbers must be finite: NaN and Infinity are not JSON") from None


# The base of every request body, the protocols' too: unknown fields refused, and what it holds
# storable (bounded nesting, valid Unicode, finite numbers).
class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _storable(self) -> Self:
        values = self.model_dump()
        if _nesting(values) > MAX_NESTING:
            raise ValueError(f"a body may nest at most {MAX_NESTING - 1} levels (params, metadata, input items)")
        check_storable(values)
        return self


# An end user's id, as any request names it (`user`): what the per-user cap counts (docs/api.md).
MAX_USER_CHARS = 256
EndUser = Annotated[str, StringConstraints(min_length=1, max_length=MAX_USER_CHARS)]
END_USER: TypeAdapter[EndUser] = TypeAdapter(EndUser)


class _ModelOptions(RequestBody):
    model: str | None = Field(None, description="`scripted`, or `<provider>:<model>`; defaults to the session's")
    params: RunParams | None = Field(
        None,
        description="sampling knobs (see docs/agents.md for which provider takes which); for `scripted`: length, pace",
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        if value is not None:
            parse_model(value)
        return value


class _RunOptions(_ModelOptions):
    user: EndUser | None = Field(
        None,
        description="your end user's id: their runs running at once count against "
        "TOKENTAIL_MAX_ACTIVE_RUNS_PER_USER; defaults to the session's",
    )


class CreateSession(_RunOptions):
    input: str | None = Field(None, description="with an input, the first run is queued at once")
    agent: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    chat_id: str | None = Field(
        None,
        pattern=CHAT_ID_PATTERN,
        description="a chat id your frontend chose (useChat `id`, AG-UI `threadId`): the session is this chat's "
        "(made now, or 200 with the existing one)",
    )
    token_scope: Scope = Field("read", description="`chat`: the stream token may also queue and cancel runs")
    webhook: str | None = Field(
        None,
        max_length=2048,
        description="a URL this session's webhook events go to (under one the operator allows), instead of the "
        "tenant's (`PUT /v1/webhook`)",
    )


class ForkRequest(_ModelOptions):
    """`POST /v1/sessions/{id}/fork`'s body: where to fork, and what changes from there on."""

    at: int = Field(ge=0, description="the fork's last event: any event of the session (0: before the first)")
    continue_: bool | None = Field(
        None,
        alias="continue",
        description="inside a run, whether it goes on in the fork from `at` (the default there); else the fork "
        "holds its events and it ends there",
    )
    agent: str | None = Field(None, description="the agent the run goes on with (default: its own)")
    instructions: str | None = Field(
        None, max_length=65536, description="told to the model beside the agent's own, from `at` on"
    )


class SetWebhook(RequestBody):
    url: str = Field(max_length=2048, description="where the tenant's sessions' webhook events go (an allowed URL)")
    rotate_secret: bool = Field(False, description="sign with a new secret from now on")
    format: WebhookFormat = Field(
        "tokentail", description="`openai`: bodies are OpenAI's webhook events (`response.completed`, ...)"
    )


class WebhookConfig(BaseModel):
    url: str | None = Field(description="where the tenant's new sessions report; null: none set")
    secret: str = Field(description="verifies the `webhook-signature` of each delivery (Standard Webhooks)")
    events: list[str] = Field(description="the event types a webhook reports")
    format: WebhookFormat = Field(description="the bodies' format: `tokentail` or `openai`")


class TokenRequest(RequestBody):
    scope: Scope | None = Field(
        None,
        description="none: a stream token's own scope (an API key gets `read`); `chat` needs an API key, or a "
        "chat token refreshing itself",
    )


class CreateRun(_RunOptions):
    input: str
    multitask: Multitask = Field(
        "reject",
        description="while a run is active: `reject` (409), `enqueue` (after it), `interrupt` (cancel it, then run), "
        "`rollback` (as `interrupt`, and the cancelled run is left out of the conversation), "
        "`steer` (no run: the active run takes the input in at its agent's next boundary; `run_id` names it)",
    )


class SessionCreated(BaseModel):
    session_id: str
    run_id: str | None
    events_url: str
    stream_token: str | None = Field(
        None, description="reads this session's events (`?token=` or bearer); null when auth is off"
    )
    stream_token_expires_at: int | None = Field(None, description="when the stream token expires (unix seconds)")
    stream_token_scope: Scope = "read"


class StreamToken(BaseModel):
    stream_token: str | None = Field(description="a fresh stream token for the session; null when auth is off")
    stream_token_expires_at: int | None
    stream_token_scope: Scope = "read"


class RunAccepted(BaseModel):
    run_id: str  # the run queued, or (`status` steered) the active run the input steered
    events_url: str
    status: Literal["queued", "steered"] = "queued"
    steer_id: str | None = None  # `steered`: the steer's id, as its `steer.accepted` names it


class SteerRequest(RequestBody):
    input: str = Field(description="what the running agent is to take in, as a user message of its conversation")
    run_id: str | None = Field(
        None,
        description="steer this run only if it is still the active one (the run the client saw); without it, "
        "the active run",
    )


class SteerAccepted(BaseModel):
    steer_id: str
    run_id: str = Field(description="the run it steers")
    status: Literal["accepted"] = Field(
        description="stored with the session: the run's agent takes it in at its next boundary (`steer.applied`), "
        "or it fails when the run ends first (`steer.failed`)"
    )


class Answer(RequestBody):
    input_id: str = Field(description="the question's id, from its `input.required` event")
    answer: Any = Field(description="matching the question's `schema`")


class AnswerAccepted(BaseModel):
    run_id: str
    input_id: str
    event_id: int = Field(description="the id of the `input.received` event the answer became")


class PendingInput(BaseModel):
    """The question a run waits for an answer to, as its `input.required` event says it."""

    run_id: str
    input_id: str
    kind: str
    prompt: str
    answer_schema: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    expires_at: float | None = None
    call_id: str | None = None

    model_config = ConfigDict(populate_by_name=True)


CancelStatus = Literal["cancelling", "cancelled", "idle", "not_active"]


class CancelRun(RequestBody):
    """`POST /v1/sessions/{id}/cancel` (and the chat UIs' stop), optional: the run the client saw."""

    # These endpoints took no body before: whatever else a client sends is ignored, as it was.
    model_config = ConfigDict(extra="ignore")

    run_id: str | None = Field(
        None,
        description="cancel this run only if it is still the active one (a client that saw a run names it: a "
        "stop meant for a run that ended meanwhile never cancels the one after it); without it, the active run",
    )


class CancelAccepted(BaseModel):
    run_id: str | None = Field(description="the run being cancelled (or the one named); null if none was active")
    status: CancelStatus = Field(
        description="`cancelling`: its worker stops it and writes `run.cancelled`; `cancelled`: no worker held it "
        "(still queued), it ended at once; `idle`: no run was active; `not_active`: the run named is not the "
        "active one (it ended, or waits in line): nothing was cancelled"
    )

    @classmethod
    def of(cls, outcome: Cancel, run_id: str | None) -> Self:
        return cls(run_id=run_id, status=_CANCEL_STATUS[outcome])


_CANCEL_STATUS: dict[Cancel, CancelStatus] = {
    Cancel.SIGNALLED: "cancelling",
    Cancel.CANCELLED: "cancelled",
    Cancel.IDLE: "idle",
    Cancel.NOT_ACTIVE: "not_active",
}


class SessionDeleted(BaseModel):
    """A deletion whose archive's copy is still to go (202; a deletion with nothing left is 204)."""

    session_id: str
    deleted: Literal[True] = True
    archive: Literal["pending"] = Field(
        "pending",
        description="the archive (PostgreSQL) did not answer: the session is deleted, and its archived copy is "
        "deleted once the archive is back",
    )


class LineView(BaseModel):
    place: int
    waiting_for: Literal["turn", "tenant_cap", "user_cap"]


class SessionView(BaseModel):
    session_id: str
    status: SessionStatus
    created_at: float
    model: str | None
    agent: str | None
    params: dict[str, Any]
    metadata: dict[str, Any]
    last_event_id: int
    active_run_id: str | None
    pending_input: PendingInput | None = Field(
        None, description="while `status` is `waiting_for_input`: the (first) question to answer"
    )
    pending_inputs: list[PendingInput] = Field(
        default_factory=list,
        description="every question the run waits for, in the order asked: several when asked at once",
    )
    forked_from: ForkOrigin | None = Field(
        None, description="a fork's source: the session it copied, and the last event id it copied"
    )
    line: LineView | None = Field(
        None,
        description="while `status` is `queued` and its run waits in its tenant's line: its `place` (1: the "
        "tenant's next to start) and what holds it (`waiting_for`: `turn`, the tenants' turns; `tenant_cap` "
        "or `user_cap`, a cap on runs running at once)",
    )
    runs: list[RunRecord] = Field(
        description="every run's record, in the order queued: the session's own runs and their sub-agent runs, "
        "each child with its `parent_run_id` (null for the session's own) and each parent with its `children` "
        "(ids, in the order spawned): the tree"
    )
    transcript: list[Turn]


class ChildRun(BaseModel):
    """A child of a run, as `GET /v1/sessions/{sid}/runs/{rid}` lists it."""

    run_id: str
    name: str | None = Field(description="the name it was given as it was spawned (`run.spawned`'s `name`)")
    agent: str | None
    call_id: str | None = Field(description="the parent's tool call it is the work of (`run.spawned`'s cause)")
    status: RunStatus
    children: list[str] = Field(description="its own children's ids (`GET …/runs/{id}` shows each)")


class RunView(RunRecord):
    """A run's record as the session's state shows it, with its children's status."""

    child_runs: list[ChildRun] = Field(description="its children, in the order spawned")

    @classmethod
    def of(cls, run: RunRecord, runs: list[RunRecord]) -> Self:
        by_id = {other.run_id: other for other in runs}
        children = [by_id[child] for child in run.children if child in by_id]
        listed = [
            ChildRun(
                run_id=child.run_id,
                name=child.name,
                agent=child.agent,
                call_id=child.call_id,
                status=child.status,
                children=child.children,
            )
            for child in children
        ]
        return cls.model_validate({**run.model_dump(by_alias=True), "child_runs": listed})


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


# For the OpenAPI schema: the error statuses of the session routes share one body, and a route
# that streams answers SSE.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 410, 413, 422, 429)
}
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}}
