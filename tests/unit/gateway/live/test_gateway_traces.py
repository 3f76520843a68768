"""The gateway's pieces of traces and of the time to first delta that need no process: a run's id
read off an event's data, the run span a connection links to, a traceparent's trace id, the runs
whose first delta a feed tells of."""

from typing import Any

import pytest
from opentelemetry.trace import SpanContext, TraceFlags

from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.live.first_delta import run_id_of
from tokentail.gateway.reading.feed import EventFeed, Start
from tokentail.shared.plumbing import tracing
from tokentail.shared.plumbing.run_spans import RunTrace
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import MessageDelta, RunStarted
from tokentail.shared.vocabulary.records import RunRecord

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
    def run_span(carrier: dict[str, str]) -> SpanContext:
        return RunTrace.of(RunRecord(run_id="r_1", input="hi", trace=carrier)).run_span

    context = run_span({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"})
    assert context.trace_id == int(TRACE_ID, 16)
    assert context.span_id == tracing.derived_span_id(int(TRACE_ID, 16), "r_1")
    assert context.trace_flags == TraceFlags.SAMPLED and context.is_remote
    assert not run_span({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-00"}).trace_flags.sampled
    # Queued with traces off (or a traceparent that is none): the trace every worker derives from the run.
    for carrier in [{}, {"traceparent": "junk"}, {"traceparent": f"00-{'0' * 32}-b7ad6b7169203331-01"}]:
        assert run_span(carrier).trace_id == tracing.derived_trace_id("tokentail-run", "r_1")


class _Told:
    def __init__(self) -> None:
        self.runs: list[str] = []

    def written(self, session_id: str, run_id: str) -> None:
        self.runs.append(run_id)


class _Hub:
    store = None

    def __init__(self) -> None:
        self.first_deltas = _Told()


def _event(seq: int, kind: str, data: Any) -> StoredEvent:
    return StoredEvent(seq, kind.encode(), data.model_dump_json().encode(), 0)


def test_a_feed_tells_of_each_runs_first_delta_once_in_reads_and_live_chunks() -> None:
    hub = _Hub()
    feed = EventFeed(hub, "s_1", Start(0, None, False), 100, until_idle=True, transport="sse")  # type: ignore[arg-type]
    read = [  # a catch-up read spanning two runs
        _event(1, "run.started", RunStarted(run_id="r_1", attempt=1)),
        _event(2, "message.delta", MessageDelta(run_id="r_1", text="a")),
        _event(3, "message.delta", MessageDelta(run_id="r_1", text="b")),
        _event(4, "run.started", RunStarted(run_id="r_2", attempt=1)),
        _event(5, "message.delta", MessageDelta(run_id="r_2", agent="helper", text="c")),
    ]
    feed._observer.sent([Chunk(read)])
    assert hub.first_deltas.runs == ["r_1", "r_2"]
    feed._observer.sent([Chunk([_event(6, "message.delta", MessageDelta(run_id="r_2", text="d"))])])
    feed._observer.sent([Chunk([_event(7, "run.started", RunStarted(run_id="r_3", attempt=1))])])
    assert hub.first_deltas.runs == ["r_1", "r_2"]  # no delta of a run it had not told of
    feed._observer.sent([Chunk([_event(8, "message.delta", MessageDelta(run_id="r_3", text="e"))])])
    assert hub.first_deltas.runs == ["r_1", "r_2", "r_3"]


def test_a_wait_that_shows_no_client_a_delta_tells_of_none() -> None:
    hub = _Hub()
    start = Start(0, None, False)
    feed = EventFeed(hub, "s_1", start, 100, until_idle=True, transport="mcp", writes_deltas=False)  # type: ignore[arg-type]
    feed._observer.sent([Chunk([_event(1, "message.delta", MessageDelta(run_id="r_1", text="a"))])])
    assert hub.first_deltas.runs == []
