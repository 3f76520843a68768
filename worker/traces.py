"""The worker's spans of a run, in the run's one trace (shared/tracing.py; docs/observability.md):

    invoke_agent {agent}      the run, from its queueing to its end: written by the worker that ends it
      attempt                 each start on a worker: the first, each takeover, each resume after an answer
        chat {model}          each model call (worker/providers/), CLIENT
        execute_tool {name}   each tool call or step tokentail runs for the agent

A run outlives its workers, and a span is exported only once it ends, so no span waits for another
process: the run's span is started and ended at the run's end (its start time: the run's queueing),
and a worker killed -9 never ends its attempt's, so the worker that takes the run over (or ends it, out
of attempts) writes a stand-in for it, under the same derived id. A stopping worker that hands its run
over ends its own (the record's `handed_over` says so, and no stand-in is written); one that finds its
lease lost ends nothing: its run may be another's now, which may have written its stand-in, and a
span id is never exported twice.

Everything here is called only when `tracing.ON`.
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode, TraceFlags

from tokentail.shared import tracing
from tokentail.shared.catalog import DEFAULT_AGENT
from tokentail.shared.events import Ending, RunCompleted, RunFailed
from tokentail.shared.records import Question, RunRecord

FIRST_TOKEN = "First Token Stream Event"  # OpenInference's name: the one backends read time to first token from
OUTCOME = "tokentail.attempt.outcome"
T = TypeVar("T")


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

    def attempt_span_id(self, attempt: int, resumes: int) -> int:
        return tracing.derived_span_id(self.trace_id, self.run_id, attempt, resumes)

    def attempt_link(self, attempt: int, resumes: int, relation: str, **attributes: Any) -> Link:
        flags = TraceFlags(TraceFlags.SAMPLED if self.sampled else TraceFlags.DEFAULT)
        context = SpanContext(self.trace_id, self.attempt_span_id(attempt, resumes), True, flags)
        return Link(context, {"tokentail.link": relation, **attributes})

    def start_attempt(
        self, attempt: int, resumes: int, start: float | None, links: list[Link], attributes: dict[str, Any]
    ) -> Span:
        with tracing.span_id(self.attempt_span_id(attempt, resumes)):
            return tracing.tracer().start_span(
                "attempt",
                context=tracing.remote(self.trace_id, self.run_span_id, self.sampled),
                links=links,
                attributes=attributes,
                start_time=None if start is None else _ns(start),
            )


def _run_attributes(run: RunRecord, session_id: str) -> dict[str, Any]:
    return {"tokentail.run.id": run.run_id, "gen_ai.conversation.id": session_id}


class AttemptSpan:
    """The span of the attempt this worker runs, current around the agent's code (`current`)."""

    def __init__(self, run: RunRecord, session_id: str) -> None:
        self.run = run
        self.session_id = session_id
        self.trace = RunTrace.of(run)
        self.model: str | None = None  # the model it asked, once known: the run's span names it
        attributes = {
            **_run_attributes(run, session_id),
            "gen_ai.agent.name": run.agent or DEFAULT_AGENT,
            "tokentail.attempt": run.attempt,
            "tokentail.attempt.resumes": run.resumes,
            "tokentail.attempt.started_as": run.started_as or "start",
        }
        links: list[Link] = []
        if run.started_as == "takeover":
            links.append(self.trace.attempt_link(run.attempt - 1, run.resumes, "taken_over_from"))
        elif run.started_as == "resume" and run.resumes:
            # The attempt that asked ended waiting; this one goes on with the answer.
            question = run.asked[-1] if run.asked else None
            links.append(self.trace.attempt_link(run.attempt, run.resumes - 1, "resumed_after_answer"))
            if question is not None:
                attributes["tokentail.input.id"] = question.input_id
                if question.asked_at is not None and run.started_at is not None:
                    attributes["tokentail.answer_wait_s"] = max(0.0, run.started_at - question.asked_at)
        elif run.queued_at is not None and run.started_at is not None:
            attributes["tokentail.queue_wait_s"] = max(0.0, run.started_at - run.queued_at)  # both Redis times
        self.span = self.trace.start_attempt(run.attempt, run.resumes, run.started_at, links, attributes)

    def current(self) -> AbstractContextManager[Span]:
        """The attempt's context as the current one: the spans of the agent's code (tokentail's, an SDK's
        instrumentation's, a framework's) nest under it."""
        return trace.use_span(self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    def first_text(self, seconds: float) -> None:
        """The attempt's first answer text, `seconds` after its start."""
        self.span.set_attribute("tokentail.time_to_first_token_s", seconds)
        self.span.add_event(FIRST_TOKEN, {"tokentail.time_to_first_token_s": seconds})

    def asked(self, question: Question) -> None:
        self.span.add_event(
            "tokentail.input.required", {"tokentail.input.id": question.input_id, "tokentail.input.kind": question.kind}
        )

    def replayed(self, **attributes: str) -> None:
        """A tool's result or a step's, taken from the run's record: not executed again, so no span."""
        self.span.add_event("tokentail.replayed", attributes)

    def end(self, outcome: str, error_type: str | None = None) -> None:
        self.span.set_attribute(OUTCOME, outcome)
        if error_type is not None:
            self.span.set_attribute("error.type", error_type)
            self.span.set_status(StatusCode.ERROR, error_type)
        self.span.end()


def write_lost_attempt(run: RunRecord, session_id: str, attempt: int, started_at: float | None, by: str) -> None:
    """The span of attempt `attempt`, whose worker died without ending it (killed -9, frozen past its
    lease): written by the worker that found it so (`by`: `takeover`, `exhausted` or `cancel`), unless
    that attempt handed the run over and ended its span itself."""
    if attempt < 1 or run.handed_over == attempt:
        return
    run_trace = RunTrace.of(run)
    attributes = {
        **_run_attributes(run, session_id),
        "gen_ai.agent.name": run.agent or DEFAULT_AGENT,
        "tokentail.attempt": attempt,
        "tokentail.attempt.resumes": run.resumes,
        "tokentail.attempt.written_by": by,  # not its own worker: a stand-in
        OUTCOME: "lost",
        "error.type": "worker_lost",
    }
    start = started_at if started_at is not None else run.queued_at  # the best known time
    span = run_trace.start_attempt(attempt, run.resumes, start, [], attributes)
    span.set_status(StatusCode.ERROR, "its worker stopped without ending it")
    span.end()


def write_run(run: RunRecord, session_id: str, ending: Ending, model: str | None = None) -> None:
    """The run's span `invoke_agent {agent}`, from its queueing to now: the run ended here."""
    run_trace = RunTrace.of(run)
    agent = run.agent or DEFAULT_AGENT
    attributes: dict[str, Any] = {
        **_run_attributes(run, session_id),
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent,
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
            attributes=attributes,
            start_time=None if run.queued_at is None else _ns(run.queued_at),
        )
    if isinstance(ending, RunFailed):
        span.set_status(StatusCode.ERROR, ending.error.type)
    span.end()


class ChatSpan:
    """One model call's `chat {model}` span (CLIENT, GenAI conventions)."""

    __slots__ = ("finish_reasons", "span")

    def __init__(self, provider: str, model: str) -> None:
        self.finish_reasons: list[str] = []
        self.span = tracing.tracer().start_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
            },
        )

    def calling(self) -> AbstractContextManager[Span]:
        """Current around the SDK's call, so that the SDK's instrumentation makes its span under this one."""
        return trace.use_span(self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    def usage(self, input_tokens: int, output_tokens: int) -> None:
        self.span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        self.span.set_attribute("gen_ai.usage.output_tokens", output_tokens)

    def response_model(self, model: str | None) -> None:
        if model:
            self.span.set_attribute("gen_ai.response.model", model)

    def end(self, error: BaseException | None = None) -> None:
        if self.finish_reasons:
            self.span.set_attribute("gen_ai.response.finish_reasons", self.finish_reasons)
        if error is not None:
            _failed(self.span, error)
        self.span.end()


def _failed(span: Span, error: BaseException) -> None:
    kind = getattr(error, "kind", None)  # a ProviderError's, as run.failed says it
    error_type = "cancelled" if isinstance(error, BaseException) and not isinstance(error, Exception) else None
    error_type = error_type or (kind if isinstance(kind, str) else type(error).__name__)
    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR, error_type)


@contextmanager
def executing_tool(name: str, call_id: str | None, tool_type: str = "function") -> Iterator[Span]:
    """The `execute_tool {name}` span of a tool (or a step) tokentail runs, current around it."""
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.tool.type": tool_type}
    if call_id:
        attributes["gen_ai.tool.call.id"] = call_id
    with tracing.tracer().start_as_current_span(
        f"execute_tool {name}",
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            _failed(span, exc)
            raise


def exemplar() -> dict[str, str] | None:
    """The current span's trace, as a Prometheus exemplar."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


async def chat(span: ChatSpan, chunks: AsyncIterator[T]) -> AsyncIterator[T]:
    """A provider's `chunks`, in `span`: current while the first is awaited (the SDK's call), ended with the stream."""
    error: BaseException | None = None
    try:
        with span.calling():
            first = await anext(chunks, None)
        if first is None:
            return
        yield first
        async for chunk in chunks:
            yield chunk
    except BaseException as exc:  # cancelled, or closed early (GeneratorExit): the call did not end well
        error = exc
        raise
    finally:
        span.end(error)
        await chunks.aclose()  # type: ignore[attr-defined]
