"""The gateway's pieces of traces and of the time to first delta that need no process: a run's id
read off an event's data, the run span a connection links to, a traceparent's trace id."""

import pytest
from opentelemetry.trace import TraceFlags

from tokentail.gateway.reading.connection_span import run_span
from tokentail.gateway.reading.first_delta import run_id_of, trace_id_of
from tokentail.shared import tracing
from tokentail.shared.events import MessageDelta, RunStarted

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    "data",
    [
        MessageDelta(run_id="r_abc", text='he said "hi"').model_dump_json().encode(),
        MessageDelta(run_id="r_abc", agent="researcher", text="x").model_dump_json().encode(),
        RunStarted(run_id="r_abc", attempt=2).model_dump_json().encode(),
    ],
)
def test_the_run_id_is_read_off_the_start_of_an_events_data(data: bytes) -> None:
    assert run_id_of(data) == "r_abc"


@pytest.mark.parametrize("data", [b"", b"{}", b'{"text":"x","run_id":"r_1"}', b'{"run_id":"r_1'])
def test_data_that_does_not_start_with_a_run_id_has_none(data: bytes) -> None:
    assert run_id_of(data) is None


def test_a_connection_links_to_the_span_every_process_derives_for_the_run() -> None:
    context = run_span({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}, "r_1")
    assert context is not None
    assert context.trace_id == int(TRACE_ID, 16)
    assert context.span_id == tracing.derived_span_id(int(TRACE_ID, 16), "r_1")
    assert context.trace_flags == TraceFlags.SAMPLED and context.is_remote
    unsampled = run_span({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-00"}, "r_1")
    assert unsampled is not None and not unsampled.trace_flags.sampled


@pytest.mark.parametrize(
    "carrier", [{}, {"traceparent": "junk"}, {"traceparent": f"00-{'0' * 32}-b7ad6b7169203331-01"}]
)
def test_a_run_without_a_trace_has_no_span_to_link_to(carrier: dict[str, str]) -> None:
    assert run_span(carrier, "r_1") is None


def test_an_exemplar_takes_the_trace_id_of_the_runs_traceparent() -> None:
    assert trace_id_of(f"00-{TRACE_ID}-b7ad6b7169203331-01") == TRACE_ID
    assert trace_id_of("") is None and trace_id_of("00-short-b7ad6b7169203331-01") is None
