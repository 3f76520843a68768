"""The worker's spans of a run, in the run's one trace (shared/plumbing/tracing.py; docs/observability.md):

    invoke_agent {agent}          the run, from its queueing to its end (shared/plumbing/run_spans.py), CONSUMER
      attempt {n} {started_as}    each start on a worker: the first, each takeover, each resume after an answer
        chat {model}              each model call (worker/providers/), CLIENT
        execute_tool {name}       each tool call or step tokentail runs for the agent

A stopping worker that hands its run over ends its attempt's span (the record's `handed_over` says so,
and no stand-in is written for it); one that finds its lease lost ends nothing: its run may be
another's now, which may have written its stand-in, and a span id is never exported twice.

Everything here is called only when `tracing.ON`.
"""

from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, StatusCode

from tokentail.shared.plumbing import tracing
from tokentail.shared.plumbing.run_spans import OUTCOME, RunTrace, run_attributes
from tokentail.shared.vocabulary.records import Question, RunRecord
from tokentail.worker.providers.base import Chunk, ModelRequest, Provider, Usage

FIRST_TOKEN = "First Token Stream Event"  # OpenInference's name: the one backends read time to first token from
T = TypeVar("T")


class AttemptSpan:
    """The span of the attempt this worker runs, current around the agent's code (`current`)."""

    def __init__(self, run: RunRecord, session_id: str) -> None:
        self.run = run
        self.session_id = session_id
        self.trace = RunTrace.of(run)
        self.model: str | None = None  # the model it asked, once known: the run's span names it
        attributes = run_attributes(run, session_id)
        links: list[Link] = []
        if run.started_as == "takeover":
            links.append(self.trace.attempt_link(run.attempt - 1, run.resumes, "taken_over_from"))
        elif run.started_as == "resume" and run.resumes:
            # The attempt that asked ended waiting; this one goes on with the answer.
            question = run.asked[-1] if run.asked else None
            links.append(self.trace.attempt_link(run.attempt, run.resumes - 1, "resumed_after_answer"))
            if question is not None:
                attributes["tokentail.input.id"] = question.input_id
                resumed_at = run.attempt_started_at or run.started_at
                if question.asked_at is not None and resumed_at is not None:
                    attributes["tokentail.answer_wait_s"] = max(0.0, resumed_at - question.asked_at)
        elif run.queued_at is not None and run.started_at is not None:
            attributes["tokentail.queue_wait_s"] = max(0.0, run.started_at - run.queued_at)  # both Redis times
        self.span = self.trace.start_attempt(
            run.attempt, run.resumes, run.started_as, run.attempt_started_at or run.started_at, links, attributes
        )

    def current(self) -> AbstractContextManager[Span]:
        """The attempt's context as the current one: the spans of the agent's code (tokentail's, an SDK's
        instrumentation's, a framework's) nest under it."""
        return trace.use_span(self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    def first_text(self, seconds: float) -> None:
        """The attempt's first answer text, `seconds` after its start."""
        self.span.set_attribute("tokentail.time_to_first_token_s", seconds)
        self.span.add_event(FIRST_TOKEN, {"tokentail.time_to_first_token_s": seconds})

    def asked(self, questions: list[Question]) -> None:
        for question in questions:
            attributes = {"tokentail.input.id": question.input_id, "tokentail.input.kind": question.kind}
            self.span.add_event("tokentail.input.required", attributes)

    def awaits(self, children: list[str]) -> None:
        for child_id in children:
            self.span.add_event("tokentail.child.awaited", {"tokentail.child.run_id": child_id})

    def replayed(self, **attributes: str) -> None:
        """A tool's result or a step's, taken from the run's record: not executed again, so no span."""
        self.span.add_event("tokentail.replayed", attributes)

    def end(self, outcome: str, error_type: str | None = None) -> None:
        self.span.set_attribute(OUTCOME, outcome)
        if error_type is not None:
            self.span.set_attribute("error.type", error_type)
            self.span.set_status(StatusCode.ERROR, error_type)
        self.span.end()


class ChatSpan:
    """One model call's `chat {model}` span (CLIENT, GenAI conventions)."""

    __slots__ = ("context", "finish_reasons", "span")

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
        self.context = trace.set_span_in_context(self.span)  # made once: it is attached around each chunk's read

    def usage(self, usage: Usage) -> None:
        self.span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        self.span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        self.finish_reasons += usage.finish_reasons
        if usage.response_model:
            self.span.set_attribute("gen_ai.response.model", usage.response_model)

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


def chat(provider: Provider, request: ModelRequest) -> AsyncIterator[Chunk]:
    """`provider.stream(request)`, with traces on in its `chat {model}` span: one wrapper over every
    provider, which reads the span's usage, finish reasons and response model from the `Usage` chunk
    the provider yields."""
    chunks = provider.stream(request)
    if not tracing.ON:
        return chunks
    return _in_span(ChatSpan(provider.provider, request.model or provider.provider), chunks)


async def _in_span(span: ChatSpan, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    """A provider's `chunks`, in `span`: current while each is awaited (the SDK's call, then its reading of the
    stream), ended with the stream.

    Current around each step, not only the first: an instrumentation may keep its span attached until the
    stream ends (Anthropic's official one, 1.3b0, does), and detaching it then puts back what was current when
    it attached, this span. Inside a step of ours, that lands in our own attach, which our detach undoes; the
    caller's code (the tool, the next model call) stays under the attempt."""
    error: BaseException | None = None
    try:
        while True:
            try:
                chunk = await _in(span, anext(chunks))
            except StopAsyncIteration:
                return
            if isinstance(chunk, Usage):
                span.usage(chunk)
            yield chunk
    except BaseException as exc:  # cancelled, or closed early (GeneratorExit): the call did not end well
        error = exc
        raise
    finally:
        span.end(error)
        # Closed early: an instrumentation's stream, dropped here, may end its span here.
        await _in(span, chunks.aclose())  # type: ignore[attr-defined]


async def _in(span: ChatSpan, step: Awaitable[T]) -> T:
    """`step` awaited with `span` current: the SDK's call, or its reading of the stream, so that its
    instrumentation makes its span under this one. Paid per chunk: an attach of the span's context
    (about 0.2 us; `trace.use_span` took 1.6)."""
    token = otel_context.attach(span.context)
    try:
        return await step
    finally:
        otel_context.detach(token)
