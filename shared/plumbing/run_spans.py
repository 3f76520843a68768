"""The spans of a run that any process may write (shared/plumbing/tracing.py; docs/observability.md): the run's
own, `invoke_agent {agent}` (the CONSUMER of the job the gateway's PRODUCER span queued), and an
attempt's, `attempt {n} {started_as}`, with the names and ids every process derives alike from the run.

A run outlives its workers, and a span is exported only once it ends, so no span waits for another
process: the run's span is started and ended where the run's end is recorded (its start time: the run's
queueing), by a worker, the reaper, or a gateway that ends a run no worker holds (a cancel, an
interrupt) or deletes its session. A worker killed -9 never ends its attempt's span, so whoever finds
the attempt dead (the worker that takes the run over, or whoever ends it) writes a stand-in under the
same derived id (`write_lost_attempt`); so does a gateway that deletes a session under a live attempt,
whose worker, fenced, ends nothing.

Everything here is called only when `tracing.ON`.
"""

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode, TraceFlags

from tokentail.shared.plumbing import tracing
from tokentail.shared.vocabulary.catalog import DEFAULT_AGENT
from tokentail.shared.vocabulary.events import Ending, RunCompleted, RunFailed, StartReason
from tokentail.shared.vocabulary.records import RunRecord

OUTCOME = "tokentail.attempt.outcome"


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


@dataclass(frozen=True, slots=True)
class RunTrace:
    """A run's place in its trace: the ids every process derives alike."""

    run_id: str
    trace_id: int
    parent: Context | None  # the span that queued the run; None: the run's span is the trace's root
    sampled: bool

    @classmethod
    def of(cls, run: RunRecord) -> "RunTrace":
        if run.trace:
            parent = tracing.context_of(run.trace)
            queued = trace.get_current_span(parent).get_span_context()
            if queued.is_valid:
                return cls(run.run_id, queued.trace_id, parent, queued.trace_flags.sampled)
        # Queued with traces off at its gateway (or before they existed): a trace of its own, derived
        # from the run, so that its attempts on any worker still find one another.
        return cls(run.run_id, tracing.derived_trace_id("tokentail-run", run.run_id), None, True)

    @property
    def run_span_id(self) -> int:
        return tracing.derived_span_id(self.trace_id, self.run_id)

    @property
    def run_span(self) -> SpanContext:
        """The run span's context: what a client's connection links to (gateway/reading/connection_span.py)."""
        return SpanContext(self.trace_id, self.run_span_id, True, self._flags)

    @property
    def _flags(self) -> TraceFlags:
        return TraceFlags(TraceFlags.SAMPLED if self.sampled else TraceFlags.DEFAULT)

    def attempt_span_id(self, attempt: int, resumes: int) -> int:
        return tracing.derived_span_id(self.trace_id, self.run_id, attempt, resumes)

    def attempt_link(self, attempt: int, resumes: int, relation: str, **attributes: Any) -> Link:
        context = SpanContext(self.trace_id, self.attempt_span_id(attempt, resumes), True, self._flags)
        return Link(context, {"tokentail.link": relation, **attributes})

    def start_attempt(
        self,
        attempt: int,
        resumes: int,
        started_as: StartReason | None,
        start: float | None,
        links: list[Link],
        attributes: dict[str, Any],
    ) -> Span:
        """The span of attempt `attempt` after `resumes` resumes (after answers to its questions), which
        started as `started_as` (None: a record written before it was kept, taken as a `start`), for its
        worker or a stand-in's writer."""
        started_as = started_as or "start"
        with tracing.span_id(self.attempt_span_id(attempt, resumes)):
            return tracing.tracer().start_span(
                _attempt_name(attempt, resumes, started_as),
                context=tracing.remote(self.trace_id, self.run_span_id, self.sampled),
                links=links,
                attributes={
                    **attributes,
                    "tokentail.attempt": attempt,
                    "tokentail.attempt.resumes": resumes,
                    "tokentail.attempt.started_as": started_as,
                },
                start_time=None if start is None else _ns(start),
            )


def _attempt_name(attempt: int, resumes: int, started_as: StartReason) -> str:
    """An attempt span's name, which says which start it was, so that a list of spans reads without
    opening them: `attempt 1 start`, `attempt 2 takeover`, `attempt 2 resume 1` (after the first answer)."""
    name = f"attempt {attempt} {started_as}"
    return f"{name} {resumes}" if started_as == "resume" else name


def run_attributes(run: RunRecord, session_id: str) -> dict[str, Any]:
    """What the run's span and each attempt's say of the run."""
    return {
        "tokentail.run.id": run.run_id,
        "gen_ai.conversation.id": session_id,
        "gen_ai.agent.name": run.agent or DEFAULT_AGENT,
    }


def queue_message(queue: str, run_id: str, operation: Literal["send", "process"]) -> dict[str, Any]:
    """What the run's job says of itself in OpenTelemetry's messaging conventions, on the span that
    queues it (`send`, the gateway's PRODUCER span) and on the one that processes it (`process`, the
    run's CONSUMER span): service graphs draw the queue's edge between the two."""
    return {
        "messaging.system": "arq",
        "messaging.operation.type": operation,
        "messaging.destination.name": queue,
        "messaging.message.id": run_id,
    }


def write_lost_attempt(
    run: RunRecord, session_id: str, attempt: int, started_as: StartReason | None, started_at: float | None, by: str
) -> None:
    """The span of attempt `attempt` (which started as `started_as`), whose worker died without ending
    it (killed -9, frozen past its lease): written by whoever found it so (`by`: `takeover`,
    `exhausted`, `cancel` or `interrupt`), unless that attempt handed the run over and ended its span
    itself. `by` `delete`: its session was deleted under it, and its worker, fenced, ends nothing."""
    if attempt < 1 or run.handed_over == attempt:
        return
    if by == "delete":  # its worker lives on, fenced
        outcome, error, why = "session_deleted", "session_deleted", "its session was deleted under it"
    else:
        outcome, error, why = "lost", "worker_lost", "its worker stopped without ending it"
    attributes = {
        **run_attributes(run, session_id),
        "tokentail.attempt.written_by": by,  # not its own worker: a stand-in
        OUTCOME: outcome,
        "error.type": error,
    }
    start = started_at if started_at is not None else run.queued_at  # the best known time
    span = RunTrace.of(run).start_attempt(attempt, run.resumes, started_as, start, [], attributes)
    span.set_status(StatusCode.ERROR, why)
    span.end()


def write_run(run: RunRecord, session_id: str, ending: Ending, queue: str, model: str | None = None) -> None:
    """The run's span `invoke_agent {agent}`, from its queueing to now: the run ended here. It is the
    CONSUMER of the job queued on `queue`: its parent is the gateway's PRODUCER span."""
    run_trace = RunTrace.of(run)
    agent = run.agent or DEFAULT_AGENT
    attributes: dict[str, Any] = {
        **run_attributes(run, session_id),
        **queue_message(queue, run.run_id, "process"),
        "gen_ai.operation.name": "invoke_agent",
        "tokentail.run.attempts": run.attempt,
        "tokentail.run.resumes": run.resumes,
    }
    if model := model or run.model:
        attributes["gen_ai.request.model"] = model
    usage = ending.usage or {}
    for name in ("input_tokens", "output_tokens"):
        if isinstance(usage.get(name), int):
            attributes[f"gen_ai.usage.{name}"] = usage[name]
    if isinstance(ending, RunCompleted):
        attributes["tokentail.run.status"] = "completed"
    elif isinstance(ending, RunFailed):
        attributes["tokentail.run.status"] = "failed"
        attributes["error.type"] = ending.error.type
    else:
        attributes["tokentail.run.status"] = "cancelled"
    parent = run_trace.parent if run_trace.parent is not None else Context()  # an empty one: a root
    root = tracing.trace_id(run_trace.trace_id) if run_trace.parent is None else nullcontext()
    with tracing.span_id(run_trace.run_span_id), root:
        span = tracing.tracer().start_span(
            f"invoke_agent {agent}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            start_time=None if run.queued_at is None else _ns(run.queued_at),
        )
    if isinstance(ending, RunFailed):
        span.set_status(StatusCode.ERROR, ending.error.type)
    span.end()


def write_unheld_end(run: RunRecord, session_id: str, ended: Ending | None, by: str, queue: str) -> None:
    """A run ended with no worker holding it (`by`: a cancel, an interrupt, out of attempts, or its
    session deleted): the stand-in of the attempt a worker died in (or, deleted, is fenced in), if it
    was `running` (`run` as it was before its end), and the run's span (`queue`: its job's)."""
    if run.status == "running":
        write_lost_attempt(run, session_id, run.attempt, run.started_as, run.attempt_started_at or run.started_at, by)
    if ended is not None:
        write_run(run, session_id, ended, queue)
