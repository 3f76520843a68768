"""The reducer over a session's sub-agent tree (docs/subagents.md): child runs streamed in their
parent's session, concurrently, each with its own blocks, drops and questions."""

import json
from typing import Any

import pytest

from tokentail.gateway.reducer import reducer as reducer_module
from tokentail.gateway.reducer.operations import (
    AttemptStarted,
    BlockAppended,
    BlockClosed,
    BlockOpened,
    ChildEnded,
    ChildStarted,
    ContentDropped,
    Operation,
    QuestionAsked,
    RunEnded,
    ToolCalled,
)
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import RunCancelled, RunCompleted, RunFailed

PARENT, A, B, GRAND = "r_parent", "r_childAAAAAA", "r_childBBBBBB", "r_grandGGGGGG"


def session(*events: tuple[str, str, dict[str, Any]], first: int = 1) -> list[StoredEvent]:
    """(run id, type, data) in order, ids from `first`. Deltas are written as the worker writes them."""
    return [
        StoredEvent(seq, kind.encode(), json.dumps({"run_id": run_id, **data}, separators=(",", ":")).encode(), 0)
        for seq, (run_id, kind, data) in enumerate(events, start=first)
    ]


def spawn(parent: str, child: str, call_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """What a parent writes when it starts a child: its tool call, then the child's run.spawned."""
    return [
        (parent, "tool.started", {"call_id": call_id, "name": "researcher", "arguments": {"input": "look"}}),
        (
            child,
            "run.spawned",
            {
                "parent_run_id": parent,
                "agent": "researcher",
                "name": "researcher",
                "input": "look",
                "cause": {"type": "tool_call", "call_id": call_id},
            },
        ),
        (child, "run.started", {"attempt": 1, "parent_run_id": parent}),
    ]


def text(run_id: str, value: str) -> tuple[str, str, dict[str, Any]]:
    return (run_id, "message.delta", {"text": value})


def completed(run_id: str, output: str, parent: str | None = None) -> tuple[str, str, dict[str, Any]]:
    return (run_id, "run.completed", {"output": output, "usage": {}, **({"parent_run_id": parent} if parent else {})})


Event = tuple[str, str, dict[str, Any]]
START: list[Event] = [(PARENT, "run.queued", {"input": "hi"}), (PARENT, "run.started", {"attempt": 1})]


def reduce(reducer: Reducer, events: list[StoredEvent]) -> list[Operation]:
    return [operation for event in events for operation in reducer.reduce(event)]


def of(run_id: str, operations: list[Operation]) -> list[Operation]:
    return [operation for operation in operations if operation.run_id == run_id]  # type: ignore[union-attr]


TWO_CHILDREN = session(
    *START,
    text(PARENT, "Asking two."),  # 3
    *spawn(PARENT, A, "c1"),  # 4, 5, 6
    *spawn(PARENT, B, "c2"),  # 7, 8, 9
    text(A, "a1"),  # 10
    text(B, "b1"),  # 11
    text(A, "a2"),  # 12
    (B, "reasoning.delta", {"text": "hmm"}),  # 13
    text(B, "b2"),  # 14
    completed(A, "a1a2", PARENT),  # 15
    (B, "run.failed", {"error": {"type": "agent_error", "message": "no"}, "parent_run_id": PARENT}),  # 16
    (PARENT, "run.started", {"attempt": 1, "reason": "resume"}),  # 17
    (PARENT, "tool.completed", {"call_id": "c1", "result": "a1a2", "duration_ms": 1}),  # 18
    (PARENT, "tool.failed", {"call_id": "c2", "error": "no", "duration_ms": 1}),  # 19
    text(PARENT, "Done."),  # 20
    completed(PARENT, "Asking two.Done."),  # 21
    (PARENT, "message.delta", {"run_id": "r_other", "text": "not ours"}),  # 22: another run of the session
)


def test_two_children_interleaved_each_in_its_own_blocks_started_and_ended_for_their_parent() -> None:
    operations = reduce(Reducer(PARENT), TWO_CHILDREN)
    started = [operation for operation in operations if isinstance(operation, ChildStarted)]
    assert started == [
        ChildStarted(PARENT, A, "researcher", "researcher", "c1", "look", 5),
        ChildStarted(PARENT, B, "researcher", "researcher", "c2", "look", 8),
    ]
    # A's second delta goes on in A's block, though B's came between: one open block per run.
    assert of(A, operations) == [
        AttemptStarted(A, 1, "start", 6),
        BlockOpened(A, "text", 10, 10),
        BlockAppended(A, "text", 10, "a1", 10),
        BlockAppended(A, "text", 10, "a2", 12),
        BlockClosed(A, "text", 10, 15, "completed"),
    ]
    assert [type(operation).__name__ for operation in of(B, operations)] == [
        "AttemptStarted", "BlockOpened", "BlockAppended", "BlockClosed",
        "BlockOpened", "BlockAppended", "BlockClosed", "BlockOpened", "BlockAppended", "BlockClosed",
    ]  # fmt: skip
    assert of(B, operations)[-1] == BlockClosed(B, "text", 14, 16, "stopped")
    ended = [operation for operation in operations if isinstance(operation, ChildEnded | RunEnded)]
    assert [(type(op).__name__, op.run_id, type(op.ending).__name__) for op in ended] == [
        ("ChildEnded", PARENT, "RunCompleted"),
        ("ChildEnded", PARENT, "RunFailed"),
        ("RunEnded", PARENT, "RunCompleted"),  # the children's ends are not RunEnded: the response goes on
    ]
    assert [op.child_run_id for op in ended if isinstance(op, ChildEnded)] == [A, B]
    # The parent's own text: its first block closed at its tool call, its last at its end.
    assert [op.text for op in of(PARENT, operations) if isinstance(op, BlockAppended)] == ["Asking two.", "Done."]
    assert not of("r_other", operations)


def test_the_deltas_of_runs_already_seen_are_read_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    real = reducer_module.parse

    def counting(event: StoredEvent) -> Any:
        parsed.append(event.type)
        return real(event)

    monkeypatch.setattr(reducer_module, "parse", counting)
    reduce(Reducer(PARENT), TWO_CHILDREN)
    # Every run's deltas are known by their heads once the run has started (or was spawned),
    # interleaved or not: only the delta of a run not followed is parsed (to learn whose it is).
    assert parsed.count(b"message.delta") == 1


def test_following_one_child_is_its_subtree_only_and_its_end_is_the_end() -> None:
    operations = reduce(Reducer(A), TWO_CHILDREN)
    assert {operation.run_id for operation in operations} == {A}  # type: ignore[union-attr]
    assert isinstance(operations[-1], RunEnded) and isinstance(operations[-1].ending, RunCompleted)


def test_a_grandchild_is_followed_through_its_parent_and_ends_for_it() -> None:
    events = session(
        *START,
        *spawn(PARENT, A, "c1"),  # 3, 4, 5
        *spawn(A, GRAND, "g1"),  # 6, 7, 8
        text(GRAND, "deep"),  # 9
        completed(GRAND, "deep", A),  # 10
        (A, "tool.completed", {"call_id": "g1", "result": "deep", "duration_ms": 1}),  # 11
        completed(A, "deep", PARENT),  # 12
    )
    for followed in (Reducer(PARENT), Reducer()):
        operations = reduce(followed, events)
        assert ChildStarted(A, GRAND, "researcher", "researcher", "g1", "look", 7) in operations
        assert BlockAppended(GRAND, "text", 9, "deep", 9) in operations
        ends = [(op.run_id, op.child_run_id) for op in operations if isinstance(op, ChildEnded)]
        assert ends == [(A, GRAND), (PARENT, A)]
    assert {op.run_id for op in reduce(Reducer(A), events)} == {A, GRAND}  # type: ignore[union-attr]


def test_a_child_taken_over_mid_block_drops_its_own_text_only() -> None:
    events = session(
        *START,
        *spawn(PARENT, A, "c1"),  # 3, 4, 5
        *spawn(PARENT, B, "c2"),  # 6, 7, 8
        text(A, "kept "),  # 9
        text(B, "b1"),  # 10
        text(A, "cut"),  # 11
        (A, "run.continued", {"attempt": 2, "from_event_id": 10, "parent_run_id": PARENT}),  # 12
        text(B, "b2"),  # 13
        text(A, "again"),  # 14
    )
    operations = reduce(Reducer(PARENT), events)
    drop = operations.index(next(op for op in operations if isinstance(op, ContentDropped)))
    assert operations[drop - 1 : drop + 1] == [
        BlockClosed(A, "text", 9, 12, "dropped"),
        ContentDropped(
            A,
            10,
            (BlockOpened(A, "text", 9, 9), BlockAppended(A, "text", 9, "kept ", 9), BlockClosed(A, "text", 9, 12)),
            12,
        ),
    ]
    # B's block stays open through A's drop; A's text after it is a new block.
    assert operations[drop + 1 :] == [
        BlockAppended(B, "text", 10, "b2", 13),
        BlockOpened(A, "text", 14, 14),
        BlockAppended(A, "text", 14, "again", 14),
    ]


def test_a_resume_mid_child_is_quiet_up_to_the_client_s_position_and_goes_on_in_the_open_block() -> None:
    question = {"input_id": "in_1", "kind": "text", "prompt": "which?", "schema": {}}
    events = session(
        *START,
        *spawn(PARENT, A, "c1"),  # 3, 4, 5
        text(A, "one "),  # 6
        (A, "input.required", question),  # 7
        (A, "input.received", {"input_id": "in_1", "answer": "x"}),  # 8
        (A, "run.started", {"attempt": 1, "reason": "resume", "parent_run_id": PARENT}),  # 9
        text(A, "two "),  # 10
        text(A, "three"),  # 11
    )
    reducer = Reducer(PARENT, quiet_until=10, answered={"in_1"})
    operations = [(event.seq, op) for event in events for op in reducer.reduce(event)]
    owed = [op for seq, op in operations if not reducer.quiet(seq)]
    assert owed == [BlockAppended(A, "text", 10, "three", 11)]  # the block the client has open goes on
    asked = next(op for _, op in operations if isinstance(op, QuestionAsked))
    assert asked.run_id == A and asked.answered and not asked.stops  # answered when the stream opened
    # Unanswered, the child's question stops it (as a run's own does): the renderer says what that means.
    waiting = [op for op in reduce(Reducer(PARENT), events[:7]) if isinstance(op, QuestionAsked)]
    assert waiting[0].stops and not waiting[0].answered


def test_children_open_when_their_ancestor_ends_end_with_it_and_their_late_ends_show_nothing() -> None:
    events = session(
        *START,
        *spawn(PARENT, A, "c1"),  # 3, 4, 5
        *spawn(A, GRAND, "g1"),  # 6, 7, 8
        text(GRAND, "deep"),  # 9
        text(A, "mid"),  # 10
        (PARENT, "run.cancelled", {"reason": "cancelled by request"}),  # 11
        text(GRAND, " late"),  # 12: written before the cascade reached its worker
        (GRAND, "run.cancelled", {"reason": "cancelled by request", "parent_run_id": A}),  # 13
        (A, "run.cancelled", {"reason": "cancelled by request", "parent_run_id": PARENT}),  # 14
    )
    for followed in (Reducer(PARENT), Reducer()):
        operations = reduce(followed, events)
        closing = [op for op in operations if isinstance(op, BlockClosed | ChildEnded | RunEnded)]
        assert [(type(op).__name__, op.run_id) for op in closing] == [
            ("BlockClosed", GRAND),
            ("ChildEnded", A),
            ("BlockClosed", A),
            ("ChildEnded", PARENT),
            ("RunEnded", PARENT),
        ]  # deepest first, each before its parent's end
        assert all(op.seq == 11 for op in closing)
        cut = closing[1]
        assert isinstance(cut, ChildEnded) and isinstance(cut.ending, RunCancelled)
        assert cut.ending.run_id == GRAND and cut.ending.reason == "cancelled by request"
        assert not any(op.seq > 11 for op in operations if hasattr(op, "seq"))


def test_a_child_spawned_again_by_a_parent_taken_over_starts_once_and_a_failed_child_is_its_parent_s() -> None:
    events = session(*START, *spawn(PARENT, A, "c1"), *spawn(PARENT, A, "c1"))
    operations = reduce(Reducer(PARENT), events)
    assert sum(isinstance(op, ChildStarted) for op in operations) == 1
    assert sum(isinstance(op, ToolCalled) for op in operations) == 2  # the parent's own events are its own
    failed = session(*START, *spawn(PARENT, A, "c1"), (A, "run.failed", {"error": {"type": "x", "message": "y"}}))
    [ended] = [op for op in reduce(Reducer(PARENT), failed) if isinstance(op, ChildEnded | RunEnded)]
    assert isinstance(ended, ChildEnded) and isinstance(ended.ending, RunFailed)


def test_what_a_run_shows_now_for_a_protocol_that_shows_the_tree_again() -> None:
    reducer = Reducer(PARENT)
    reduce(reducer, TWO_CHILDREN[:12])  # A: "a1", "a2" (open); B: "b1" (open)
    assert reducer.shown(A) == (BlockOpened(A, "text", 10, 10), BlockAppended(A, "text", 10, "a1a2", 12))
    assert reducer.shown("r_unknown") == ()
