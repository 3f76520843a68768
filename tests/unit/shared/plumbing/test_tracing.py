"""shared/plumbing/tracing.py: when traces are on, what a process exports, and the span ids processes share."""

import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate

from tests.servers.otlp_receiver import otlp_receiver
from tokentail.shared.plumbing import tracing


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),  # a name alone exports nothing
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ],
)
def test_traces_are_off_unless_configured(env: dict[str, str], on: bool) -> None:
    assert tracing.configured(env) is on


def test_derived_span_ids_agree_across_processes_and_differ_by_part() -> None:
    trace_id = 0x0AF7651916CD43DD8448EB211C80319C
    first = tracing.derived_span_id(trace_id, "r_1", 1, 0)
    assert first == tracing.derived_span_id(trace_id, "r_1", 1, 0)
    assert 0 < first < 2**64
    assert (
        len({first, tracing.derived_span_id(trace_id, "r_1", 2, 0), tracing.derived_span_id(trace_id + 1, "r_1", 1, 0)})
        == 3
    )


CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def carried(tracestate: str, baggage: str | None = None) -> dict[str, str]:
    """What a run's record keeps of a caller's trace context, as a gateway reads it (OpenTelemetry's
    default propagators: W3C trace context and baggage)."""
    headers = {"traceparent": CALLER, "tracestate": tracestate, **({"baggage": baggage} if baggage else {})}
    token = otel_context.attach(propagate.extract(headers))
    try:
        return tracing.carrier()
    finally:
        otel_context.detach(token)


def members(count: int, chars: int) -> list[str]:
    """`count` tracestate list-members of `chars` characters each (`k07=vvv...`)."""
    return [f"k{i:02d}=" + "v" * (chars - 4) for i in range(count)]


def test_a_runs_trace_context_is_its_traceparent_and_a_tracestate_within_w3cs_limits() -> None:
    """Issue 52: a client's tracestate (32 members of 250 characters) and baggage were stored whole in
    every run record (608 bytes became 16,964). W3C Trace Context asks a platform to pass on 32 members
    and 512 characters at least, cut by whole members: those over 128 characters first, then from the
    right. Baggage is no part of a trace's context: not kept."""
    assert carried("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "userId=alice,tier=gold") == {
        "traceparent": CALLER,
        "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    }
    assert carried(",".join(members(32, 250)), ",".join(f"b{i}={'x' * 245}" for i in range(30))) == {
        "traceparent": CALLER  # every member over 128 characters: none left
    }
    hundreds = members(32, 100)
    assert carried(",".join(hundreds))["tracestate"] == ",".join(hundreds[:5])  # 504 characters
    long_first = ["a=1", "big=" + "x" * 250, "b=2", "c=" + "y" * 200, *members(3, 20)]  # 528 characters
    assert carried(",".join(long_first))["tracestate"] == ",".join(["a=1", "b=2", *members(3, 20)])
    for within in (members(32, 15), ["a=1", "big=" + "x" * 200]):  # 511 characters; one long member
        assert carried(",".join(within))["tracestate"] == ",".join(within)  # nothing to cut: kept whole


SCRIPT = textwrap.dedent(
    """
    from tokentail.shared.plumbing import tracing
    assert tracing.setup(tracing.GATEWAY)
    trace_id = 0x0AF7651916CD43DD8448EB211C80319C
    run_span = tracing.derived_span_id(trace_id, "r_1")
    with tracing.span_id(run_span):
        parent = tracing.tracer().start_span("invoke_agent", context=tracing.remote(trace_id, 0x00F067AA0BA902B7))
    with tracing.tracer().start_as_current_span("child", context=tracing.remote(trace_id, run_span)):
        carried = tracing.carrier()
    parent.end()
    print(carried["traceparent"])
    """
)


def test_a_configured_process_exports_over_otlp_http_with_derived_ids() -> None:
    with otlp_receiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], env={**env, **receiver.env()}, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        spans = receiver.wait_for(lambda spans: len(spans) == 2)
    by_name = {s.name: s for s in spans}
    run_span = tracing.derived_span_id(0x0AF7651916CD43DD8448EB211C80319C, "r_1")
    assert by_name["invoke_agent"].span_id == f"{run_span:016x}"
    assert by_name["invoke_agent"].parent_id == "00f067aa0ba902b7"
    assert by_name["child"].parent_id == f"{run_span:016x}"
    assert by_name["child"].span_id != by_name["invoke_agent"].span_id  # the derived id was for one span only
    assert {s.service for s in spans} == {"tokentail-gateway"}  # no OTEL_SERVICE_NAME: tokentail's name
    assert done.stdout.strip() == f"00-0af7651916cd43dd8448eb211c80319c-{by_name['child'].span_id}-01"


JOINING = textwrap.dedent(
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from tokentail.shared.plumbing import tracing

    exporter = InMemorySpanExporter()  # an application's own provider, as logfire.configure() sets one up
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert tracing.setup(tracing.WORKER)  # no OTEL_* at all: it joins the application's provider
    with tracing.span_id(42):
        tracing.tracer().start_span("run").end()
    (span,) = exporter.get_finished_spans()
    assert span.context.span_id == 42, span.context
    """
)


def test_without_otel_variables_a_process_joins_the_tracer_provider_its_application_set_up() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", JOINING], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
