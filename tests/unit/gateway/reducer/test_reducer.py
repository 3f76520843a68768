"""The reducer: the rules every protocol that is not tokentail's own renders (what is open, what a
takeover drops, what a resuming client is owed). tests/unit/gateway/protocols/test_protocol_cases.py runs the same
rules through every renderer and each protocol's client."""

import json
from typing import Any

from tokentail.gateway.reducer.operations import (
    AttemptStarted,
    BlockAppended,
    BlockClosed,
    BlockOpened,
    ContentDropped,
    DataShown,
    Operation,
    QuestionAnswered,
    QuestionAsked,
    RunEnded,
    RunOpened,
    StatusShown,
    SteerShown,
    ToolCalled,
    ToolDenied,
    ToolFinished,
)
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.run_log import dropped_by

RUN = "r_one"


def stored(events: list[tuple[str, dict[str, Any]]], run_id: str = RUN, first: int = 1) -> list[StoredEvent]:
    return [
        StoredEvent(seq, kind.encode(), json.dumps({"run_id": run_id, **data}).encode(), 0)
        for seq, (kind, data) in enumerate(events, start=first)
    ]


def reduce(reducer: Reducer, events: list[StoredEvent]) -> list[Operation]:
    return [operation for event in events for operation in reducer.reduce(event)]


START: list[tuple[str, dict[str, Any]]] = [("run.queued", {"input": "hi"}), ("run.started", {"attempt": 1})]


def test_deltas_of_a_kind_are_one_block_closed_before_anything_else_shown_but_a_status() -> None:
    events = stored(
        [
            *START,
            ("reasoning.delta", {"text": "Think"}),
            ("status", {"text": "Looking"}),
            ("reasoning.delta", {"text": "ing."}),
            ("message.delta", {"text": "Hel"}),
            ("message.delta", {"text": "lo"}),
            ("tool.started", {"call_id": "c1", "name": "clock", "arguments": {}}),
            ("tool.completed", {"call_id": "c1", "result": "noon", "duration_ms": 1}),
            ("data.chart", {"data": [1]}),
            ("message.delta", {"text": "."}),
            ("run.completed", {"output": "Hello.", "usage": {}}),
        ]
    )
    operations = reduce(Reducer(RUN), events)
    assert [type(operation).__name__ for operation in operations] == [
        "RunOpened", "AttemptStarted",
        "BlockOpened", "BlockAppended", "StatusShown", "BlockAppended",
        "BlockClosed", "BlockOpened", "BlockAppended", "BlockAppended",
        "BlockClosed", "ToolCalled", "ToolFinished", "DataShown",
        "BlockOpened", "BlockAppended", "BlockClosed", "RunEnded",
    ]  # fmt: skip
    assert operations[2] == BlockOpened(RUN, "reasoning", 3, 3)
    assert operations[7] == BlockOpened(RUN, "text", 6, 6)
    assert operations[9] == BlockAppended(RUN, "text", 6, "lo", 7)
    assert operations[-2] == BlockClosed(RUN, "text", 11, 12, "completed")
    assert isinstance(operations[4], StatusShown) and isinstance(operations[13], DataShown)


def test_a_restart_drops_everything_the_run_showed_its_answered_question_included() -> None:
    events = stored(
        [
            *START,
            ("message.delta", {"text": "Before. "}),
            ("tool.started", {"call_id": "c1", "name": "delete", "arguments": {}}),
            ("input.required", {"input_id": "in_1", "kind": "approval", "prompt": "?", "schema": {}, "call_id": "c1"}),
            ("input.received", {"input_id": "in_1", "answer": {"approved": True}}),
            ("run.started", {"attempt": 1, "reason": "resume"}),
            ("message.delta", {"text": "After"}),
            ("run.retrying", {"attempt": 2, "reason": "worker lost"}),
        ]
    )
    operations = reduce(Reducer(RUN), events)
    assert operations[-2:] == [
        BlockClosed(RUN, "text", 8, 9, "dropped"),
        ContentDropped(RUN, 0, (), 9),
    ]


def test_a_continuation_drops_what_follows_its_point_and_keeps_the_rest_to_show_again() -> None:
    events = stored(
        [
            *START,
            ("message.delta", {"text": "Checking. "}),
            ("tool.started", {"call_id": "c1", "name": "clock", "arguments": {}}),
            ("input.required", {"input_id": "in_1", "kind": "text", "prompt": "?", "schema": {}}),
            ("input.received", {"input_id": "in_1", "answer": "yes"}),
            ("tool.completed", {"call_id": "c1", "result": "noon", "duration_ms": 1}),
            ("message.delta", {"text": "It is "}),
            ("message.delta", {"text": "the cut"}),
            ("run.continued", {"attempt": 2, "from_event_id": 8}),
        ]
    )
    operations = reduce(Reducer(RUN), events)
    closed, dropped = operations[-2:]
    assert closed == BlockClosed(RUN, "text", 8, 10, "dropped")
    assert isinstance(dropped, ContentDropped) and dropped.after == 8
    kept = dropped.kept
    assert [type(operation).__name__ for operation in kept] == [
        "BlockOpened", "BlockAppended", "BlockClosed", "ToolCalled", "QuestionAsked", "QuestionAnswered",
        "ToolFinished", "BlockOpened", "BlockAppended", "BlockClosed",
    ]  # fmt: skip
    assert kept[1] == BlockAppended(RUN, "text", 3, "Checking. ", 3)
    assert kept[8] == BlockAppended(RUN, "text", 8, "It is ", 8)  # the block kept to its point
    asked = kept[4]
    assert isinstance(asked, QuestionAsked) and asked.answered  # the run went on: it stops no stream
    assert isinstance(kept[5], QuestionAnswered) and isinstance(kept[6], ToolFinished)


def test_a_continuation_that_drops_nothing_leaves_the_block_open() -> None:
    events = stored(
        [
            *START,
            ("message.delta", {"text": "Hel"}),
            ("run.continued", {"attempt": 2, "from_event_id": 3}),
            ("message.delta", {"text": "lo"}),
        ]
    )
    operations = reduce(Reducer(RUN), events)
    assert operations[-2:] == [BlockAppended(RUN, "text", 3, "Hel", 3), BlockAppended(RUN, "text", 3, "lo", 5)]


def test_a_fork_s_start_drops_what_followed_its_point_and_opens_no_new_attempt() -> None:
    copied = [*START, ("message.delta", {"text": "Hel"}), ("message.delta", {"text": "p me"})]
    cut = reduce(Reducer(RUN), stored([*copied, ("run.started", {"attempt": 1, "reason": "fork", "from_event_id": 3})]))
    assert isinstance(cut[-1], ContentDropped) and cut[-1].after == 3
    assert cut[-1].kept[1] == BlockAppended(RUN, "text", 3, "Hel", 3)
    assert not any(isinstance(operation, AttemptStarted) and operation.reason == "fork" for operation in cut)
    going_on = stored([*copied, ("run.started", {"attempt": 1, "reason": "fork", "from_event_id": 4})])
    assert reduce(Reducer(RUN), going_on)[-1] == BlockAppended(RUN, "text", 3, "p me", 4)  # nothing dropped


def test_what_a_drop_takes_by_event_type() -> None:
    assert dropped_by(0, 5, "input.required") and dropped_by(0, 5, "message.delta")  # a restart: everything
    assert not dropped_by(4, 5, "input.received") and dropped_by(4, 5, "data.chart")  # a continuation: agent events
    assert not dropped_by(5, 5, "tool.started") and not dropped_by(0, 5, "run.started")


def test_only_the_run_asked_for_and_a_run_queued_behind_does_not_reset_what_is_shown() -> None:
    reducer = Reducer()  # every run of the session (AG-UI's thread stream)
    events = [
        *stored([*START, ("message.delta", {"text": "one"})]),
        *stored([("run.queued", {"input": "next"})], run_id="r_two", first=4),
        *stored([("run.continued", {"attempt": 2, "from_event_id": 2})], first=5),
    ]
    operations = reduce(reducer, events)
    assert isinstance(operations[-1], ContentDropped) and operations[-1].kept == ()  # "one" was r_one's
    assert RunOpened("r_two", "next", 4) in operations
    mine = reduce(Reducer("r_two"), events)
    assert mine == [RunOpened("r_two", "next", 4)]


def test_quiet_up_to_the_client_s_position_and_answers_known_at_the_start() -> None:
    reducer = Reducer(RUN, quiet_until=3, answered={"in_1"})
    assert reducer.quiet(3) and not reducer.quiet(4)
    asked = stored([("input.required", {"input_id": "in_1", "kind": "text", "prompt": "?", "schema": {}})])
    [operation] = reduce(reducer, asked)
    assert isinstance(operation, QuestionAsked) and operation.answered


def test_a_denial_an_unknown_event_and_the_end() -> None:
    events = stored(
        [
            *START,
            ("tool.failed", {"call_id": "c1", "error": "denied", "duration_ms": 0, "denied": True}),
            ("some.future_event", {}),
            ("run.cancelled", {"reason": "cancelled by request"}),
        ]
    )
    operations = reduce(Reducer(RUN), events)
    assert operations[2] == ToolDenied(RUN, "c1", "denied", 3)
    assert isinstance(operations[-1], RunEnded) and len(operations) == 4
    assert isinstance(operations[1], AttemptStarted) and not isinstance(operations[2], ToolCalled)


def test_a_steer_is_shown_as_it_goes_and_its_taking_in_ends_the_text_before_it() -> None:
    events = stored(
        [
            *START,
            ("message.delta", {"text": "Paris is"}),
            ("steer.accepted", {"steer_id": "st_1", "input": "in French"}),
            ("message.delta", {"text": " the"}),
            ("steer.applied", {"steer_id": "st_1"}),
            ("message.delta", {"text": "\n\nParis est."}),
            ("steer.accepted", {"steer_id": "st_2", "input": "late"}),
            ("steer.failed", {"steer_id": "st_2", "reason": "run_ended"}),
            ("run.completed", {"output": "Paris is the\n\nParis est.", "usage": {}}),
        ]
    )
    operations = reduce(Reducer(), events)
    steers = [op for op in operations if isinstance(op, SteerShown)]
    assert [(op.steer_id, op.status, op.input, op.reason) for op in steers] == [
        ("st_1", "accepted", "in French", None),
        ("st_1", "applied", None, None),
        ("st_2", "accepted", "late", None),
        ("st_2", "failed", None, "run_ended"),
    ]
    applied = operations.index(steers[1])
    assert isinstance(operations[applied - 1], BlockClosed)  # the text before it ends there...
    assert isinstance(operations[applied + 1], BlockOpened)  # ...and the answer after it is a block of its own
    # Accepted while the text streams, it leaves the block open: one block until the steer is taken in.
    assert [op.text for op in operations[: applied - 1] if isinstance(op, BlockAppended)] == ["Paris is", " the"]
