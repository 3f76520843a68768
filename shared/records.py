"""What Redis keeps about a session and its runs, and the transcript derived from it."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.events import ErrorInfo

PUBLIC_TENANT = "public"  # the owner of sessions made while auth is off (every caller, then)

RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
Multitask = Literal["reject", "enqueue", "interrupt"]


class RunRecord(BaseModel):
    run_id: str
    input: str
    model: str | None = None  # None: the agent's model, else the worker's default
    params: dict[str, Any] = Field(default_factory=dict)
    agent: str | None = None
    status: RunStatus = "queued"
    attempt: int = 0
    handovers: int = 0  # attempts ended by a stopping worker handing the run over (not counted as failures)
    queued_seq: int | None = None
    started_seq: int | None = None
    finished_seq: int | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    output: str | None = None
    usage: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


class SessionRecord(BaseModel):
    session_id: str
    created_at: float
    tenant: str = PUBLIC_TENANT  # the owner: only its API keys (and tokens issued for it) see the session
    model: str | None = None
    agent: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    last_event_id: int = 0
    active_run_id: str | None = None
    runs: list[RunRecord] = Field(default_factory=list)

    @property
    def active_run(self) -> RunRecord | None:
        return next((run for run in self.runs if run.run_id == self.active_run_id), None)

    @property
    def status(self) -> Literal["idle", "queued", "running"]:
        run = self.active_run
        if run is None:
            return "idle"
        return "running" if run.status == "running" else "queued"


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    run_id: str
    status: RunStatus | None = None  # assistant turns only


def transcript(runs: list[RunRecord], partial_text: str = "") -> list[Turn]:
    """User inputs and assistant answers in order; the active run's answer is the text streamed so far."""
    turns: list[Turn] = []
    for run in runs:
        turns.append(Turn(role="user", content=run.input, run_id=run.run_id))
        if run.status == "queued":
            continue
        content = run.output if run.output is not None else partial_text if run.active else ""
        turns.append(Turn(role="assistant", content=content, run_id=run.run_id, status=run.status))
    return turns
