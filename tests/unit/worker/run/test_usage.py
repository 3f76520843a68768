"""worker/run/usage.py: the run's usage from its attempts', and what a cut attempt streamed unreported."""

import json
from typing import Any

from tests.support.sessions import make_run
from tests.unit.worker.writes.test_writer import LeaseTicks, RecordingLease
from tokentail.shared.store.reads import StoredEvent
from tokentail.worker.run.usage import UsageMeter, estimated_tokens, run_usage, unreported_chars, with_estimate
from tokentail.worker.writes.writer import EventWriter


def test_one_attempt_reports_its_counts_alone() -> None:
    assert run_usage({"1": {"input_tokens": 10, "output_tokens": 20, "seq": 7}}) == {
        "input_tokens": 10,
        "output_tokens": 20,
    }
    assert run_usage({}) == {"input_tokens": 0, "output_tokens": 0}


def test_several_attempts_add_up_and_are_listed_with_what_was_estimated() -> None:
    usage = run_usage(
        {
            "2": {"input_tokens": 5, "output_tokens": 8, "seq": 30},
            "1": with_estimate({"input_tokens": 10, "output_tokens": 20, "seq": 12}, unreported_chars=41),
            "3": {"input_tokens": 0, "output_tokens": 0},  # an attempt that spent nothing is left out
        }
    )
    assert usage == {
        "input_tokens": 15,
        "output_tokens": 39,
        "attempts": [
            {"attempt": 1, "input_tokens": 10, "output_tokens": 31, "estimated_output_tokens": 11},
            {"attempt": 2, "input_tokens": 5, "output_tokens": 8},
        ],
    }


def test_an_estimate_alone_is_listed_so_the_reader_knows() -> None:
    usage = run_usage({"1": with_estimate({}, unreported_chars=8)})
    assert usage["output_tokens"] == 2 and usage["attempts"][0]["estimated_output_tokens"] == 2
    assert estimated_tokens(0) == 0 and estimated_tokens(1) == 1 and estimated_tokens(9) == 3


def test_unreported_chars_are_those_of_the_last_attempt_after_its_last_report() -> None:
    events: list[tuple[int, str, dict[str, Any]]] = [
        (1, "run.queued", {"run_id": "r"}),
        (2, "run.started", {"run_id": "r", "attempt": 1}),
        (3, "message.delta", {"run_id": "r", "text": "abcd"}),  # attempt 1, reported (seq 3)
        (4, "message.delta", {"run_id": "r", "text": "efgh"}),
        (5, "run.continued", {"run_id": "r", "attempt": 2, "from_event_id": 4}),
        (6, "reasoning.delta", {"run_id": "r", "text": "thinking"}),
        (7, "message.delta", {"run_id": "other", "text": "not this run's"}),
        (8, "message.delta", {"run_id": "r", "text": "ij"}),
        (9, "run.retrying", {"run_id": "r", "attempt": 3}),  # attempt 3's first event
        (10, "run.started", {"run_id": "r", "attempt": 3}),
    ]
    assert unreported_chars(events, "r", since=3, until=5) == 4  # attempt 1: "efgh"
    assert unreported_chars(events, "r", since=0, until=10) == 10  # attempt 2: "thinking", "ij"


async def test_a_report_is_recorded_as_it_comes_unless_the_run_s_end_takes_it() -> None:
    """A report is recorded with the run (a takeover counts it); one still unsent when the run ends is
    left to the end, whose terminal event records the total: no record for a run that has just ended."""
    lease = RecordingLease()
    writer = EventWriter(lease, LeaseTicks(0.01), max_output_chars=1000)  # type: ignore[arg-type]
    meter = UsageMeter(make_run(), writer)
    meter.add(3, 5)
    await meter.settle()
    meter.add(2, 7)  # the last model call's report, and the run ends at once
    assert meter.total() == {"input_tokens": 5, "output_tokens": 12}
    await meter.settle()
    meter.add(1, 1)  # (an agent that reports after its end: counted nowhere else either)
    await meter.settle()
    recorded = [usage for kind, (_, usage) in lease.landed if kind == "usage"]
    assert recorded == [{"input_tokens": 3, "output_tokens": 5}]


class _Stream:
    """Stands in for the session store: the events a takeover reads, as Redis holds them."""

    def __init__(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.events = [
            StoredEvent(seq, kind.encode(), json.dumps(data).encode(), 0) for seq, (kind, data) in enumerate(events, 1)
        ]

    async def read(self, session_id: str, after: int, count: int) -> list[StoredEvent]:
        return [event for event in self.events if event.seq > after][:count]


async def test_a_takeover_records_its_estimate_of_what_the_cut_attempt_streamed_unreported() -> None:
    """What attempt 1 streamed past its last report is estimated by attempt 2, and recorded with the run
    under attempt 1: a later takeover counts it too."""
    run = make_run()
    run.attempt, run.queued_seq, run.started_seq = 2, 1, 5
    run.attempt_usage = {"1": {"input_tokens": 3, "output_tokens": 2, "seq": 3}}
    stream = _Stream(
        [
            ("run.queued", {"run_id": run.run_id, "input": "hello"}),
            ("run.started", {"run_id": run.run_id, "attempt": 1}),
            ("message.delta", {"run_id": run.run_id, "text": "reported"}),
            ("message.delta", {"run_id": run.run_id, "text": "12345678"}),  # past the report: 2 tokens
            ("run.continued", {"run_id": run.run_id, "attempt": 2, "from_event_id": 4}),
        ]
    )
    lease = RecordingLease()
    meter = UsageMeter(run, EventWriter(lease, LeaseTicks(0.01), max_output_chars=1000))  # type: ignore[arg-type]
    meter.reports = True
    await meter.estimate_taken_over(stream, "s", run)  # type: ignore[arg-type]
    estimate = {"input_tokens": 3, "output_tokens": 4, "estimated_output_tokens": 2}
    assert [entry for entry in lease.landed if entry[0] == "usage"] == [("usage", (1, estimate))]
    assert meter.total()["attempts"] == [{"attempt": 1, **estimate}]
