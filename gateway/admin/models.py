"""What the admin API answers: its OpenAPI schema, which the console and schemathesis read. Times are
epoch seconds."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tokentail.shared.features.workers import RunRef
from tokentail.shared.vocabulary.records import ForkOrigin, RunStatus, Turn


class WhoAmI(BaseModel):
    who: str
    tenant: str | None = Field(description="the one tenant this credential sees; null: every tenant")
    auth: bool = Field(description="whether the console asks for a key (auth on)")


class Tenant(BaseModel):
    tenant: str
    running: int = Field(description="its runs holding a slot")
    waiting: int = Field(description="its runs waiting in its line to start")
    cap: int = Field(description="its cap on runs at once; 0: none")
    parked: bool = Field(description="at its cap with runs waiting: skipped until a slot frees")


class Tenants(BaseModel):
    tenants: list[Tenant]


class Worker(BaseModel):
    worker: str
    host: str
    pid: int
    version: str
    started_at: float
    heartbeat_at: float
    alive: bool = Field(description="it beat within the last 10 seconds")
    slots: int = Field(description="runs it streams at once, at most")
    running: int = Field(description="the runs it holds now")
    runs: list[RunRef] = Field(description="those runs (the overview lists the first 10)")


class Workers(BaseModel):
    workers: list[Worker]


class Point(BaseModel):
    at: float
    tokens_per_second: float
    first_token_ms: float | None = Field(description="the mean time to first token of the step's runs")


class Metrics(BaseModel):
    step_seconds: int
    points: list[Point]


class RunSummary(BaseModel):
    session_id: str
    run_id: str
    tenant: str
    user: str | None
    agent: str | None
    model: str | None
    status: RunStatus
    attempt: int
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    input: str = Field(description="its first 200 characters")
    error: str | None


class RunPage(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="ask again with it for older runs; null: no more")
    scanned: int = Field(description="index entries this page read")


class Counts(BaseModel):
    running: int = Field(description="runs the live workers hold")
    queued: int = Field(description="runs waiting in the tenants' lines")
    waiting: int = Field(description="runs waiting for answers, among the runs going it lists")


class Overview(BaseModel):
    tenants: list[Tenant]
    workers: list[Worker]
    metrics: Metrics
    active: list[RunSummary] = Field(description="runs queued, running or waiting, of the newest 250 (50 at most)")
    recent: list[RunSummary] = Field(description="runs failed or taken over, of the newest 250 (20 at most)")
    counts: Counts


class Found(BaseModel):
    session_id: str
    run_id: str | None


class SessionRun(RunSummary):
    parent_run_id: str | None
    depth: int
    name: str | None


class OpenQuestion(BaseModel):
    run_id: str
    input_id: str
    kind: str
    prompt: str
    answer_schema: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    expires_at: float | None

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class SessionDetail(BaseModel):
    session_id: str
    tenant: str
    user: str | None
    created_at: float
    runs: list[SessionRun]
    transcript: list[Turn] = Field(description="as the demo page shows it: inputs, steers and answers in order")
    questions: list[OpenQuestion]


class Stage(BaseModel):
    """One stage of a run; `kind` says which fields it has (docs/console.md)."""

    model_config = {"extra": "allow"}
    at: float
    kind: Literal[
        "queued",
        "started",
        "retrying",
        "continued",
        "lost",
        "text",
        "tool",
        "question",
        "answered",
        "steer",
        "spawned",
        "usage",
        "ended",
    ]


class TimelineEvent(BaseModel):
    id: int
    type: str
    data: Any
    at: float


class ForkMade(BaseModel):
    """A fork made inside a run (`POST /v1/sessions/{sid}/fork` with `at`, the console's fork and re-run):
    its session, where the run goes on, and the event it was made at."""

    session_id: str
    event_id: int
    at: float = Field(description="when it was made (epoch seconds)")


class Timeline(BaseModel):
    session_id: str
    run_id: str
    forked_from: ForkOrigin | None = Field(None, description="the session (and event) the run's session is a fork of")
    forks: list["ForkMade"] = Field(default_factory=list, description="the forks made inside the run, newest first")
    tenant: str
    status: RunStatus
    attempt: int
    trace_id: str | None
    trace_url: str | None
    stages: list[Stage]
    truncated: bool = Field(description="the run has more events than a timeline reads: its stages stop early")
    events: list[TimelineEvent]
    next_after: int | None = Field(description="ask again with `after` set to it for the run's next events")


class Cancelled(BaseModel):
    run_id: str
    outcome: str


class ForkBody(BaseModel):
    """A fork of the run from the console: at one of its events (`at`), else at its last recorded step
    (a re-run); what changes from there on."""

    model_config = ConfigDict(extra="forbid")

    at: int | None = Field(None, ge=0, description="one of the run's events; left out: after its last recorded step")
    model: str | None = None
    agent: str | None = None
    instructions: str | None = Field(None, max_length=65536)


class Forked(BaseModel):
    session_id: str  # the fork's
    run_id: str  # the run, going on in it
    at: int  # the source's event it goes on from


class Answered(BaseModel):
    event_id: int


class Expired(BaseModel):
    run_id: str
    input_id: str


class AnswerBody(BaseModel):
    input_id: str
    answer: Any


class Audited(BaseModel):
    given_back: int = Field(description="slots given back: held by runs that no longer run")
