"""The filter of one run's events (gateway/reading/run_filter.py), batch by batch."""

import json
from typing import Any

from tokentail.gateway.encodings.sse import NativeSse
from tokentail.gateway.live.chunk import Chunk, run_of
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.run_filter import RunFilter
from tokentail.gateway.reading.streams import SSE_PING
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import Gap
from tokentail.shared.vocabulary.records import RunRecord


def record(
    run_id: str, parent: str | None = None, status: str = "running", finished_seq: int | None = None
) -> RunRecord:
    return RunRecord.model_validate(
        {"run_id": run_id, "input": "", "status": status, "parent_run_id": parent, "finished_seq": finished_seq}
    )


def linked(*runs: RunRecord) -> list[RunRecord]:
    """The records as spawn.lua writes them: each child's id among its parent's `children` too."""
    by_id = {run.run_id: run for run in runs}
    for run in runs:
        if run.parent_run_id is not None:
            by_id[run.parent_run_id].children.append(run.run_id)
    return list(runs)


def event(seq: int, event_type: str, **data: Any) -> StoredEvent:
    return StoredEvent(seq, event_type.encode(), json.dumps(data, separators=(",", ":")).encode(), 0)


def ids(frames: bytes) -> list[int]:
    return [int(line[4:]) for line in frames.decode().splitlines() if line.startswith("id: ")]


def test_run_of_reads_the_head_and_parses_what_does_not_start_with_it() -> None:
    assert run_of(b'{"run_id":"r_abc","text":"x"}') == "r_abc"
    assert run_of(b'{"text": "x", "run_id": "r_abc"}') == "r_abc"


def test_pending_runs_are_those_active_or_ended_after_the_clients_position() -> None:
    runs = linked(record("root"), record("a", "root", "completed", 10), record("a1", "a", "completed", 5))
    assert RunFilter(NativeSse(1000), runs, "a", True, 7, 15).pending == {"a"}
    assert RunFilter(NativeSse(1000), runs, "a", True, 4, 15).pending == {"a", "a1"}
    assert RunFilter(NativeSse(1000), runs, "a", True, 10, 15).finished
    assert RunFilter(NativeSse(1000), runs, "a", False, 4, 15).followed.runs == {"a"}


def test_a_batch_keeps_the_subtrees_events_and_learns_its_children() -> None:
    followed = RunFilter(NativeSse(1000), linked(record("root"), record("a", "root")), "a", True, 0, 15)
    spawned = {
        "parent_run_id": "a",
        "agent": "x",
        "name": "x",
        "input": "",
        "cause": {"type": "tool_call", "call_id": "c"},
    }
    chunk = Chunk(
        [
            event(1, "message.delta", run_id="root", text="r"),
            event(2, "run.spawned", run_id="a2", **spawned),
            event(3, "message.delta", run_id="a2", text="x"),
            event(4, "message.delta", run_id="a", text="y"),
            event(5, "run.completed", run_id="a", output="y", usage={}),
        ]
    )
    assert ids(followed.batch(Batch([chunk]))) == [2, 3, 4, 5]
    assert not followed.finished  # a2 goes on
    trimmed = Batch(
        [Chunk([event(6, "message.delta", run_id="root", text="r")])], Gap(reason="trimmed", first_available=6)
    )
    assert followed.batch(trimmed) == b""  # a gap with nothing of the subtree: told before its next event
    cancelled = followed.batch(Batch([Chunk([event(7, "run.cancelled", run_id="a2", reason="x")])]))
    assert cancelled.startswith(b'event: gap\ndata: {"reason":"trimmed","first_available":6}\n\nid: 7\n')
    assert ids(cancelled) == [7]
    assert followed.finished


def test_a_chunk_all_of_the_followed_runs_goes_as_it_is() -> None:
    followed = RunFilter(NativeSse(1000), [record("a")], "a", False, 0, 15)
    chunk = Chunk([event(1, "message.delta", run_id="a", text="x")])
    assert followed._kept(chunk) is chunk


def test_nothing_of_the_followed_runs_for_a_heartbeat_sends_a_ping() -> None:
    others = Batch([Chunk([event(1, "message.delta", run_id="root", text="r")])])
    assert RunFilter(NativeSse(1000), [record("root"), record("a")], "a", False, 0, 15).batch(others) == b""
    assert RunFilter(NativeSse(1000), [record("root"), record("a")], "a", False, 0, 0).batch(others) == SSE_PING
    assert RunFilter(NativeSse(1000), [record("a")], "a", False, 0, 15).batch(Batch()) == SSE_PING
