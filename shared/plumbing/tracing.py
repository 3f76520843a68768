"""OpenTelemetry traces: off unless OpenTelemetry's own variables configure them (docs/observability.md).

`setup(service)` runs once per process (the gateway's and the worker's commands). When `OTEL_*` ask for
traces and `tokentail[otel]` (the SDK and the OTLP/HTTP exporter) is installed, it installs a tracer
provider and sets `ON`; every span tokentail makes is behind a check of `ON`, which is all that a
deployment without tracing pays. The API itself (`opentelemetry-api`) comes with FastAPI.

A run outlives the processes that work on it: the gateway queues it, a worker runs an attempt and may
die, another takes over, a third resumes it after an answer. So the spans that several processes
must agree on have ids derived from the run (`derived_span_id`): any worker can parent an attempt on
the run's span, link it to the attempt before, or write a dead attempt's span on its behalf, with no
id kept anywhere but the run's trace context, which its record carries (`RunRecord.trace`).
"""

import functools
import hashlib
import importlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger(__name__)

ON = False  # set by `setup` when traces are configured: the one check on every traced path
GATEWAY = "tokentail-gateway"  # the services' names unless OTEL_SERVICE_NAME says otherwise
WORKER = "tokentail-worker"

# W3C Trace Context's tracestate limits (§3.3.1.5), which a run's record keeps to (`carrier`).
TRACESTATE_MEMBERS = 32
TRACESTATE_CHARS = 512
TRACESTATE_LONG_MEMBER = 128  # members over this go first when a tracestate must be cut
# A run's record carries W3C trace context whatever OTEL_PROPAGATORS say: it is read back here alone.
_TRACE_CONTEXT = TraceContextTextMapPropagator()

_SPAN_ID: ContextVar[int | None] = ContextVar("tokentail_span_id", default=None)
_TRACE_ID: ContextVar[int | None] = ContextVar("tokentail_trace_id", default=None)


def configured(env: Mapping[str, str] = os.environ) -> bool:
    """Whether OpenTelemetry's variables ask for traces: an exporter named, or an OTLP endpoint set."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup(service: str) -> bool:
    """Trace this process if configured, or if the application already set up an SDK tracer provider of
    its own (`logfire.configure()` in an agent's module, say: tokentail's spans go there too);
    `service`: its name unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names it. True if on."""
    global ON
    if ON or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ON
    try:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        if configured():
            logger.warning("OTEL_* ask for traces, but tokentail[otel] is not installed: pip install 'tokentail[otel]'")
        return False
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.id_generator = _DerivedSpanIds(current.id_generator)  # type: ignore[assignment]  # an IdGenerator, duck-typed
        ON = True
        return ON
    if not configured():
        return False
    named = "service.name" in OTELResourceDetector().detect().attributes
    resource = Resource.create({} if named else {"service.name": service})
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER(_ARG)
    provider.id_generator = _DerivedSpanIds(provider.id_generator)  # type: ignore[assignment]
    provider.add_span_processor(BatchSpanProcessor(_exporter()))  # OTEL_BSP_* apply
    trace.set_tracer_provider(provider)
    ON = True
    logger.info("traces on: service %s", resource.attributes.get("service.name"))
    return ON


def _exporter() -> Any:
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower() or "otlp"
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise SystemExit(f"OTEL_TRACES_EXPORTER={name}: tokentail exports traces with otlp or console")
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    )
    if protocol == "grpc":
        try:
            grpc = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")  # not an extra
        except ImportError:
            raise SystemExit(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc installed"
            ) from None
        return grpc.OTLPSpanExporter()
    if protocol != "http/protobuf":
        raise SystemExit(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: use http/protobuf or grpc")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # its endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*


@functools.cache
def tracer() -> Tracer:
    return trace.get_tracer("tokentail")


def carrier() -> dict[str, str]:
    """The current span's trace context, to travel with a run in its record: W3C `traceparent`, and
    `tracestate` within W3C's limits (`_bounded_tracestate`), so that a record stays small whatever a
    client sent. Not baggage: it is no part of a trace's identity, and nothing reads it back from a
    run (the attempts' spans are parented by derived ids, `remote`, which carry none)."""
    headers: dict[str, str] = {}
    _TRACE_CONTEXT.inject(headers)
    if state := _bounded_tracestate(headers.pop("tracestate", "")):
        headers["tracestate"] = state
    return headers


def _bounded_tracestate(header: str) -> str:
    """`header` (list-members `key=value` joined by commas, as OpenTelemetry writes it) within W3C Trace
    Context's limits (§3.3.1.5): at most 32 list-members, and at most 512 characters, commas included,
    the least a platform must pass on. It is cut as the spec says, by whole members: those over 128
    characters first, then from the right (the leftmost are the most recent vendors')."""
    if header.count(",") < TRACESTATE_MEMBERS and len(header) <= TRACESTATE_CHARS:
        return header
    members = [member for member in header.split(",") if len(member) <= TRACESTATE_LONG_MEMBER]
    del members[TRACESTATE_MEMBERS:]
    while len(",".join(members)) > TRACESTATE_CHARS:
        members.pop()
    return ",".join(members)


def exemplar() -> dict[str, str] | None:
    """The current span's trace, as a Prometheus exemplar."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def context_of(headers: Mapping[str, str]) -> Context:
    """The trace context `carrier` gave, to parent spans on."""
    return _TRACE_CONTEXT.extract(headers)


def derived_span_id(trace_id: int, *parts: object) -> int:
    """A span id every process computes alike from the trace and `parts` (a run id, an attempt)."""
    digest = hashlib.blake2b(f"{trace_id:032x}/{'/'.join(map(str, parts))}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) or 1


def derived_trace_id(*parts: object) -> int:
    """A trace id every process computes alike from `parts`: the trace of a run queued with traces
    off at its gateway (an empty `RunRecord.trace`), so that the workers of its attempts still agree."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=16).digest()
    return int.from_bytes(digest) or 1


def remote(trace_id: int, span_id: int, sampled: bool = True) -> Context:
    """A context whose parent is span `span_id` of trace `trace_id`, made by another process."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return trace.set_span_in_context(NonRecordingSpan(SpanContext(trace_id, span_id, True, flags)))


def span_id(value: int) -> AbstractContextManager[None]:
    """Give the next span started here the id `value` (see `derived_span_id`)."""
    return _preset(_SPAN_ID, value)


def trace_id(value: int) -> AbstractContextManager[None]:
    """Give the next root span started here the trace id `value` (see `derived_trace_id`)."""
    return _preset(_TRACE_ID, value)


@contextmanager
def _preset(var: ContextVar[int | None], value: int) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def _taken(var: ContextVar[int | None]) -> int | None:
    """A preset id, for one span only: its children get ids of their own."""
    value = var.get()
    if value is not None:
        var.set(None)
    return value


class _DerivedSpanIds:
    """The provider's id generator, except for a span started under `span_id` (or a root under `trace_id`)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def generate_span_id(self) -> int:
        value = _taken(_SPAN_ID)
        return int(self.inner.generate_span_id()) if value is None else value

    def generate_trace_id(self) -> int:
        value = _taken(_TRACE_ID)
        return int(self.inner.generate_trace_id()) if value is None else value

    def is_trace_id_random(self) -> bool:
        return bool(getattr(self.inner, "is_trace_id_random", lambda: False)())
