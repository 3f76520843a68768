"""AG-UI 1.1's subagents (docs/spec/1.1/events/subagents.mdx) from a session's sub-agent tree: each
child run an invocation, announced before its events, each of them tagged, closed before the run
ends. tests/node/test_ag_ui_subagents.py runs the same streams through @ag-ui/client's verifier."""

import json
from typing import Any

import pytest

from tests.unit.gateway.reducer.test_reducer_tree import (
    GRAND,
    PARENT,
    START,
    TWO_CHILDREN,
    A,
    B,
    Event,
    completed,
    session,
    spawn,
    text,
)
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.ag_ui.capabilities import capabilities_of
from tokentail.gateway.protocols.ag_ui.render import AgUiEvents
from tokentail.gateway.reading.feed import Batch
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import StoredEvent

pytestmark = pytest.mark.ag_ui

Json = dict[str, Any]


def frames(renderer: AgUiEvents, events: list[StoredEvent]) -> list[tuple[str, Json]]:
    """(frame id, event) of every frame the stream sends, event by event as live notifications bring them."""
    out = renderer.head(None)
    for event in events:
        out += renderer.batch(Batch([Chunk([event])]))
        if renderer.finished:
            break
    sent = []
    for frame in out.decode().split("\n\n"):
        if frame:
            head, data = frame.split("\n")
            sent.append((head.removeprefix("id: "), json.loads(data.removeprefix("data: "))))
    return sent


def stream(events: list[StoredEvent], **kwargs: Any) -> list[Json]:
    return [event for _, event in frames(AgUiEvents("t", [], **{"run_id": PARENT, **kwargs}), events)]


def brief(events: list[Json]) -> list[str]:
    """Each event's type, and the subagent it is of or names."""
    return [event["type"] + (f" {event['subagentRunId']}" if "subagentRunId" in event else "") for event in events]


def test_two_children_interleaved_each_announced_tagged_and_closed_with_its_outcome() -> None:
    events = stream(TWO_CHILDREN)
    assert brief(events) == [
        "RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
        "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", f"SUBAGENT_STARTED {A}",
        "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", f"SUBAGENT_STARTED {B}",
        f"TEXT_MESSAGE_START {A}", f"TEXT_MESSAGE_CONTENT {A}",
        f"TEXT_MESSAGE_START {B}", f"TEXT_MESSAGE_CONTENT {B}",
        f"TEXT_MESSAGE_CONTENT {A}",
        f"TEXT_MESSAGE_END {B}", f"REASONING_START {B}", f"REASONING_MESSAGE_START {B}",
        f"REASONING_MESSAGE_CONTENT {B}", f"REASONING_MESSAGE_END {B}", f"REASONING_END {B}",
        f"TEXT_MESSAGE_START {B}", f"TEXT_MESSAGE_CONTENT {B}",
        f"TEXT_MESSAGE_END {A}", f"SUBAGENT_FINISHED {A}",
        f"TEXT_MESSAGE_END {B}", f"SUBAGENT_ERROR {B}",
        "TOOL_CALL_RESULT", "TOOL_CALL_RESULT", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]  # fmt: skip
    started = [event for event in events if event["type"] == "SUBAGENT_STARTED"]
    assert started[0] == {
        "type": "SUBAGENT_STARTED",
        "subagentRunId": A,
        "name": "researcher",
        "parentToolCallId": "c1",
    }
    finished = next(event for event in events if event["type"] == "SUBAGENT_FINISHED")
    assert finished["outcome"] == {"type": "success"} and finished["result"] == "a1a2"
    error = next(event for event in events if event["type"] == "SUBAGENT_ERROR")
    assert (error["message"], error["code"]) == ("no", "agent_error")
    # A's text goes on in A's message though B's came between.
    assert {event["messageId"] for event in events if event.get("subagentRunId") == A and "messageId" in event} == {
        f"{A}-10"
    }


def test_a_grandchild_names_its_parent_invocation_and_a_child_s_calls_are_its_own() -> None:
    events = stream(
        session(
            *START,
            *spawn(PARENT, A, "c1"),
            (A, "tool.started", {"call_id": "c1", "name": "clock", "arguments": {}}),  # named as its parent's call
            (A, "tool.completed", {"call_id": "c1", "result": "noon", "duration_ms": 1}),
            *spawn(A, GRAND, "g1"),
            text(GRAND, "deep"),
            completed(GRAND, "deep", A),
            completed(A, "deep", PARENT),
            completed(PARENT, "deep"),
        )
    )
    grand = next(event for event in events if event.get("subagentRunId") == GRAND)
    assert grand == {
        "type": "SUBAGENT_STARTED",
        "subagentRunId": GRAND,
        "name": "researcher",
        "parentSubagentRunId": A,
        "parentToolCallId": f"{A}.g1",
    }
    calls = [
        (event["toolCallId"], event.get("subagentRunId")) for event in events if event["type"] == "TOOL_CALL_START"
    ]
    assert calls == [("c1", None), (f"{A}.c1", A), (f"{A}.g1", A)]
    assert [e for e in brief(events) if e.startswith("SUBAGENT_FINISHED")] == [
        f"SUBAGENT_FINISHED {GRAND}",
        f"SUBAGENT_FINISHED {A}",
    ]


CANCELLED = session(
    *START,
    *spawn(PARENT, A, "c1"),
    *spawn(A, GRAND, "g1"),
    text(GRAND, "deep"),
    text(A, "mid"),
    (PARENT, "run.cancelled", {"reason": "cancelled by request"}),
    (GRAND, "run.cancelled", {"reason": "cancelled by request", "parent_run_id": A}),
    (A, "run.cancelled", {"reason": "cancelled by request", "parent_run_id": PARENT}),
)


def test_a_cancel_closes_the_open_subagents_deepest_first_before_the_run_finishes_cancelled() -> None:
    events = stream(CANCELLED)
    tail = brief(events)[-5:]
    assert tail == [
        f"TEXT_MESSAGE_END {GRAND}",
        f"SUBAGENT_ERROR {GRAND}",
        f"TEXT_MESSAGE_END {A}",
        f"SUBAGENT_ERROR {A}",
        "RUN_FINISHED",
    ]
    assert events[-1]["outcome"] == {"type": "cancelled"}
    assert events[-2]["code"] == "cancelled"


QUESTION = {"input_id": "in_1", "kind": "text", "prompt": "which one?", "schema": {}}
ASKING_EVENTS: list[Event] = [
    *START,
    *spawn(PARENT, A, "c1"),  # 3, 4, 5
    *spawn(PARENT, B, "c2"),  # 6, 7, 8
    text(B, "b1"),  # 9
    (A, "input.required", QUESTION),  # 10
    text(B, "b2"),  # 11
    completed(B, "b1b2", PARENT),  # 12: the tree only waits for the answer now
    (A, "input.received", {"input_id": "in_1", "answer": "x"}),  # 13
    (A, "run.started", {"attempt": 1, "reason": "resume", "parent_run_id": PARENT}),  # 14
    text(A, "after"),  # 15
    completed(A, "after", PARENT),  # 16
    (PARENT, "run.started", {"attempt": 1, "reason": "resume"}),  # 17
    completed(PARENT, "both"),  # 18
]
ASKING = session(*ASKING_EVENTS)
# The answer comes while B still streams.
ANSWERED_WHILE_STREAMING = session(*ASKING_EVENTS[:11], (A, "input.received", {"input_id": "in_1", "answer": "x"}))


def test_a_child_s_question_ends_the_run_once_no_child_streams_its_subagents_suspended() -> None:
    asked = stream(ASKING[:12])
    assert brief(asked)[-5:] == [
        f"TEXT_MESSAGE_CONTENT {B}",  # B streams on past A's question: its "b2"
        f"TEXT_MESSAGE_END {B}",
        f"SUBAGENT_FINISHED {B}",
        f"SUBAGENT_FINISHED {A}",
        "RUN_FINISHED",
    ]
    assert asked[-3]["outcome"] == {"type": "success"} and asked[-3]["result"] == "b1b2"
    assert asked[-2]["outcome"] == {"type": "suspended", "interruptIds": ["in_1"]}
    [interrupt] = asked[-1]["outcome"]["interrupts"]
    assert interrupt["id"] == "in_1" and interrupt["subagentRunId"] == A
    # The answer's AG-UI run: the run from its start, quiet up to the answer; A announced again.
    resumed = stream(ASKING, quiet_until=13, answered=frozenset({"in_1"}), continuing=True)
    assert brief(resumed) == [
        "RUN_STARTED",
        f"SUBAGENT_STARTED {A}", f"TEXT_MESSAGE_START {A}", f"TEXT_MESSAGE_CONTENT {A}",
        f"TEXT_MESSAGE_END {A}", f"SUBAGENT_FINISHED {A}",
        "RUN_FINISHED",
    ]  # fmt: skip


def test_a_child_s_question_answered_while_another_streams_ends_nothing() -> None:
    events = stream(ANSWERED_WHILE_STREAMING)
    assert "RUN_FINISHED" not in brief(events)
    assert brief(events)[-1] == f"TEXT_MESSAGE_CONTENT {B}"


def test_a_child_taken_over_restates_the_whole_tree_its_messages_tagged() -> None:
    events = stream(
        session(
            *START,
            text(PARENT, "Asking."),  # 3
            *spawn(PARENT, A, "c1"),  # 4, 5, 6
            *spawn(PARENT, B, "c2"),  # 7, 8, 9
            text(A, "kept "),  # 10
            text(B, "b1"),  # 11
            text(A, "cut"),  # 12
            (A, "run.continued", {"attempt": 2, "from_event_id": 11, "parent_run_id": PARENT}),  # 13
            text(B, "b2"),  # 14
        )
    )
    snapshot = next(event for event in events if event["type"] == "MESSAGES_SNAPSHOT")
    shown = [(m["id"], m.get("subagentRunId"), m.get("content")) for m in snapshot["messages"]]
    assert shown == [
        (f"{PARENT}-input", None, "hi"),
        (f"{PARENT}-3", None, "Asking."),
        (f"{A}-10", A, "kept "),
        (f"{B}-11", B, "b1"),  # B's open message, as it is so far
    ]
    assert brief(events)[-1] == f"TEXT_MESSAGE_CONTENT {B}"


def test_a_reconnect_at_any_frame_of_the_tree_sends_exactly_the_rest() -> None:
    whole = frames(AgUiEvents("t", [], run_id=PARENT), TWO_CHILDREN)
    for at, (frame_id, _) in enumerate(whole):
        seq, _, part = frame_id.partition(".")
        after, within = (int(seq) - 1, int(part) + 1) if part else (int(seq), 0)
        rest = frames(AgUiEvents("t", [], run_id=PARENT, quiet_until=after, within=within), TWO_CHILDREN)
        assert rest == whole[at + 1 :], frame_id


def test_usage_of_the_children_counts_in_the_run_s() -> None:
    events = session(
        *START,
        *spawn(PARENT, A, "c1"),
        (
            A,
            "run.completed",
            {"output": "a", "usage": {"input_tokens": 5, "output_tokens": 2}, "parent_run_id": PARENT},
        ),
        (PARENT, "run.completed", {"output": "p", "usage": {"input_tokens": 10, "output_tokens": 3}}),
    )
    assert stream(events)[-1]["usage"] == [{"inputTokens": 15, "outputTokens": 5}]


def test_the_capabilities_declare_subagents() -> None:
    multi_agent = capabilities_of(Settings())["multiAgent"]
    assert multi_agent["supported"] and multi_agent["delegation"]
