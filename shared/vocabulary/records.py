"""What Redis keeps about a session and its runs, and the transcript derived from it."""

import base64
import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from tokentail.shared.vocabulary.events import ClientRequest, ErrorInfo, InputKind, InputRequired, StartReason

PUBLIC_TENANT = "public"  # the owner of sessions made while auth is off (every caller, then)

RunStatus = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]
ACTIVE_STATUSES: frozenset[RunStatus] = frozenset({"queued", "running", "waiting"})  # a run not over
OnExpiry = Literal["fail", "default"]


# A step's recorded result, and all of one run's: they live in Redis while the run is active, and a
# worker that goes on with the run reads them all at its start, so both are bounded (a run's whole
# answer, at the default 1,000,000 characters, fits in a step).
MAX_STEP_BYTES = 4 * 1024 * 1024
MAX_RUN_STEPS_BYTES = 16 * 1024 * 1024

# Steers: input for the active run while it runs (docs/steering.md). A few may wait at once; those its
# agent took in are recorded as steps of this name, so an attempt that goes on replays them.
MAX_PENDING_STEERS = 8
STEERS_STEP = "steers"
STEERED_APART = "\n\n"  # in a run's answer, between the text before steers and the text after them


class Steer(BaseModel):
    """A steer as the session keeps it while it waits for its run's agent (lib/steers.lua)."""

    steer_id: str
    run_id: str
    input: str


class SteerTaken(BaseModel):
    """A steer its run's agent took in, as the run's record keeps it (apply_steers.lua)."""

    steer_id: str
    output_at: int  # how many characters of the run's answer came before it
    # Its text: kept apart from the record, in the session's steered hash, and put back by the reads of
    # the store (shared/store/reads.py: with_steer_texts); inline in records from before, forks and revivals.
    input: str | None = None

    @property
    def text(self) -> str:
        return self.input or ""


def _listed(value: Any) -> Any:
    """`waiting_for` as a list: a record from before several questions could be open has one id (or
    None), and Lua's cjson writes an empty list back as `{}`."""
    return [value] if isinstance(value, str) else [] if value is None or value == {} else value


class Question(BaseModel):
    """A question a run asked (`ctx.ask`), as its record keeps it: what was asked, and what a worker
    that continues the run needs (the text streamed before it, the agent's saved state)."""

    input_id: str
    kind: InputKind
    prompt: str
    answer_schema: dict[str, Any] = Field(alias="schema")
    expires_at: float | None = None
    asked_at: float | None = None  # when (epoch seconds): a task's last change (gateway/commands/tasks.py)
    on_expiry: OnExpiry = "fail"
    default: Any = None
    call_id: str | None = None
    output_before: str = ""
    state: Any = None
    # Which of the run's batches of questions it was asked in (how many times the run had gone on
    # after answers then): questions asked at once share it. None in records from before batches.
    batch: int | None = None
    client: ClientRequest | None = None  # asked of the client's program (an editor), not of a person

    model_config = {"populate_by_name": True, "serialize_by_alias": True}

    def event(self, run_id: str, more: int = 0) -> InputRequired:
        """The `input.required` event that asks it, with `more` questions asked with it after it."""
        return InputRequired(
            run_id=run_id,
            input_id=self.input_id,
            kind=self.kind,
            prompt=self.prompt,
            answer_schema=self.answer_schema,
            expires_at=self.expires_at,
            call_id=self.call_id,
            more=more,
            client=self.client,
        )


Multitask = Literal["reject", "enqueue", "interrupt", "rollback", "steer"]
SessionStatus = Literal["idle", "queued", "running", "waiting_for_input"]


class RunRecord(BaseModel):
    run_id: str
    input: str
    model: str | None = None  # None: the agent's model, else the worker's default
    params: dict[str, Any] = Field(default_factory=dict)
    agent: str | None = None
    # Told to the model beside the agent's own instructions (its system prompt): a fork's override, for
    # what the run does from the fork's event on (gateway/commands/branching.py).
    instructions: str | None = None
    user: str | None = None  # the caller's end user (a request's `user`), for the per-user cap; else the session's
    status: RunStatus = "queued"
    attempt: int = 0  # 1 on its first start, one more at each takeover (an answer's resume is no attempt)
    handovers: int = 0  # attempts ended by a stopping worker handing the run over (not counted as failures)
    # For the traces of the attempts (worker/run/traces.py): the last attempt handed over, which ended its
    # own span; and when and how the start before the latest one was, the start of an attempt a
    # takeover writes the span of on its dead worker's behalf (shared/plumbing/run_spans.py).
    handed_over: int | None = Field(default=None, exclude=True)
    previous_started_at: float | None = Field(default=None, exclude=True)
    previous_started_as: StartReason | None = Field(default=None, exclude=True)
    started_as: StartReason | None = None  # why its latest `run.started`: its first, a takeover, a resume
    # The worker process (shared/features/workers.py's id) of each of its starts, in order: the console's
    # timeline names them. Not shown to a tenant.
    workers: list[str] = Field(default_factory=list, exclude=True)
    queued_seq: int | None = None
    started_seq: int | None = None
    finished_seq: int | None = None
    queued_at: float | None = None
    # Its place in its tenant's line (ms), for a child: its tree's root's, so that a tree's runs start
    # ahead of the tenant's runs queued after it (spawn.lua). Never shown.
    line_at: int | None = Field(default=None, exclude=True)
    # When the gateway received the request that queued it (that gateway's clock; None for a run queued
    # over a socket): where the time to first delta that a user feels starts (gateway/live/first_delta.py).
    received_at: float | None = None
    started_at: float | None = None  # its first start (a takeover or a resume keeps it)
    attempt_started_at: float | None = Field(default=None, exclude=True)  # its latest start: its attempt's span
    finished_at: float | None = None
    output: str | None = None
    usage: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    reason: str | None = None
    # Questions (ctx.ask): those asked, in order, and their answers by input id; `waiting_for`: those
    # still unanswered while the run waits (status `waiting`; several may be open at once: asked together),
    # `waiting_until` their earliest deadline (ms).
    asked: list[Question] = Field(default_factory=list)
    answers: dict[str, Any] = Field(default_factory=dict)
    # Who answered each question and through which gateway, by input id (`{"who", "gateway"}`): the
    # console's timeline shows them. Not shown to a tenant.
    answered_by: dict[str, dict[str, str]] = Field(default_factory=dict, exclude=True)
    waiting_for: Annotated[list[str], BeforeValidator(_listed)] = Field(default_factory=list)
    waiting_until: int | None = None
    resumes: int = 0  # starts after its questions were answered (each batch of them once)
    steers: list[SteerTaken] = Field(default_factory=list)  # taken in, in order: the transcript shows them
    # The trace context of the span that queued it (W3C traceparent, and tracestate within W3C's limits;
    # empty with traces off): every attempt of the run joins that trace, on whichever worker
    # (shared/plumbing/tracing.py).
    trace: dict[str, str] = Field(default_factory=dict)
    # The results of the steps it recorded (RunContext.step), as JSON text by step key, while it is
    # active: a worker that continues it replays them. Kept apart from the record (the session's
    # steps hash: record_step.lua), and here only for the worker that starts the run. Never shown.
    steps: dict[str, str] = Field(default_factory=dict, exclude=True)
    # What each attempt cost, by attempt number, as its worker recorded it while it ran (record_usage.lua:
    # the counts and the session's last id then); the run's end reports the total (worker/run/usage.py).
    attempt_usage: dict[str, dict[str, int]] = Field(default_factory=dict, exclude=True)
    step_seq: int | None = Field(default=None, exclude=True)  # the session's last event id at its last step
    # A child run (docs/subagents.md): the run that spawned it, how deep it is (0: a session's own run),
    # the parent's call that spawned it and the name it was given; its lane (shared/store/keys.py: where
    # its lease, meta and steps live, beside the session's), never shown.
    parent_run_id: str | None = None
    depth: int = 0
    call_id: str | None = None
    name: str | None = None
    lane: str | None = Field(default=None, exclude=True)
    # A parent: its children in the order spawned; while it waits for them (status `waiting`), those
    # it waits for (the last of them to end queues it again: lib/runs.lua's end_run).
    children: Annotated[list[str], BeforeValidator(_listed)] = Field(default_factory=list)
    awaiting: Annotated[list[str], BeforeValidator(_listed)] = Field(default_factory=list)
    # Cancelled by a `rollback` (multitask, or a cancel's): the conversation leaves it out, as if never asked.
    rolled_back: bool = False
    # A fork's run until its first start: the event of it the fork goes on from (fork_session.lua writes
    # it; start_run.lua starts the run as `reason: "fork"` and clears it). Never shown.
    forked_at: int | None = Field(default=None, exclude=True)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def in_conversation(self) -> bool:
        """Whether the conversation shows it as a turn: not a child's (its work is its parent's tool call),
        nor one rolled back (as if never asked). The transcript, the next run's history and a LangGraph
        thread's messages all ask this."""
        return self.parent_run_id is None and not self.rolled_back

    @property
    def segment(self) -> int:
        """Which of its segments is going on: one more each time it went on after its questions were
        answered, and after each steer it took in. A segment is one response of the Responses API
        (gateway/protocols/responses/render.py): a response ends at its questions (one, or several
        asked at once), or where a steer was taken in, and the run goes on as the next one.
        lib/webhooks.lua's segment_of counts the same."""
        return self.resumes + len(self.steers)

    @property
    def questions(self) -> list[Question]:
        """The questions the run waits for answers to, in the order asked."""
        return [question for question in self.asked if question.input_id in self.waiting_for]

    @property
    def question(self) -> Question | None:
        """The first of them (a protocol that shows one question at a time shows it)."""
        return next(iter(self.questions), None)


class ForkOrigin(BaseModel):
    """Where a fork came from: the session it copied, and the last event id it copied."""

    session_id: str
    event_id: int


class SessionRecord(BaseModel):
    session_id: str
    created_at: float
    tenant: str = PUBLIC_TENANT  # the owner: only its API keys (and tokens issued for it) see the session
    model: str | None = None
    agent: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    webhook: str | None = None  # the URL its webhook events go to (shared/features/webhook_policy.py)
    user: str | None = None  # the end user its runs count against, when a run names none (shared/features/admission.py)
    last_event_id: int = 0
    active_run_id: str | None = None
    runs: list[RunRecord] = Field(default_factory=list)
    # A fork's ancestry, oldest first: each session it descends from and the last event id taken from
    # it (shared/store/lua/fork_session.lua). The last is the session it was forked from; a run queued at or
    # before an entry's event id was made in that entry's session (`origin_of`).
    lineage: list[ForkOrigin] = Field(default_factory=list)
    # The job it owes while a run of it waits to start (its meta's `dispatch`: lib/jobs.lua's Jobs), for where
    # that run waits in its tenant's line (shared/features/admission.py's place_of). Neither shown nor archived.
    dispatch: str | None = Field(default=None, exclude=True)

    @property
    def forked_from(self) -> ForkOrigin | None:
        return self.lineage[-1] if self.lineage else None

    def origin_of(self, run: RunRecord) -> str:
        """The session `run` was made in: this one, or the ancestor a fork copied it from."""
        seq = run.queued_seq or 0
        return next((origin.session_id for origin in self.lineage if seq <= origin.event_id), self.session_id)

    def lineage_after(self, event_id: int) -> list[ForkOrigin]:
        """The lineage of a fork of this session after `event_id`."""
        kept = [origin.model_copy(update={"event_id": min(origin.event_id, event_id)}) for origin in self.lineage]
        return [*kept, ForkOrigin(session_id=self.session_id, event_id=event_id)]

    def turn_boundaries(self) -> list[int]:
        """The event ids after which the session is idle, where it may be forked: 0 (before anything)
        and each run's terminal event with no other run queued and unended then."""
        ends = sorted(run.finished_seq for run in self.runs if run.finished_seq is not None)
        return [0, *(end for end in ends if self.run_shown_at(end) is None)]

    @property
    def active_run(self) -> RunRecord | None:
        return self.run(self.active_run_id) if self.active_run_id is not None else None

    def run(self, run_id: str) -> RunRecord | None:
        return next((run for run in self.runs if run.run_id == run_id), None)

    def run_shown_at(self, seq: int) -> RunRecord | None:
        """The run that a client holding the session's events up to `seq` sees going: the first one
        queued by then that had not ended by then (a session runs one run at a time, in line)."""
        return next(
            (
                run
                for run in self.runs
                if run.queued_seq is not None
                and run.queued_seq <= seq
                and (run.finished_seq is None or run.finished_seq > seq)
            ),
            None,
        )

    @property
    def status(self) -> SessionStatus:
        run = self.active_run
        if run is None:
            return "idle"
        if run.status == "waiting":
            return "waiting_for_input"
        return "running" if run.status == "running" else "queued"


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    run_id: str
    status: RunStatus | None = None  # assistant turns only


def transcript(runs: list[RunRecord], partial_text: str = "") -> list[Turn]:
    """User inputs and assistant answers in order; the active run's answer is the text streamed so far.
    A run rolled back is in none of them: the next run's agent is given the conversation without it.
    The steers a run took in are user turns of their own, where its answer took them in."""
    turns: list[Turn] = []
    for run in runs:
        if not run.in_conversation:
            continue
        turns.append(Turn(role="user", content=run.input, run_id=run.run_id))
        if run.status == "queued":
            continue
        content = run.output if run.output is not None else partial_text if run.active else ""
        before = 0
        for steer in run.steers:
            if answered := content[before : steer.output_at]:
                turns.append(Turn(role="assistant", content=answered, run_id=run.run_id, status=run.status))
            turns.append(Turn(role="user", content=steer.text, run_id=run.run_id))
            before = steer.output_at
        rest = content[before:].removeprefix(STEERED_APART) if run.steers else content
        turns.append(Turn(role="assistant", content=rest, run_id=run.run_id, status=run.status))
    return turns


def child_run_id(parent_run_id: str, call_id: str) -> str:
    """The id of the child run that `parent_run_id`'s call `call_id` spawns: the same each time the parent
    makes that call (a parent taken over re-attaches to the child it started, never starts it twice),
    and of the form every run id has (`r_` and 12 url-safe characters)."""
    digest = hashlib.sha256(f"{parent_run_id}\n{call_id}".encode()).digest()
    return "r_" + base64.urlsafe_b64encode(digest).decode()[:12]
