"""LangGraph's view of a session (gateway/protocols/langgraph): `values.messages` built from stored events
(state.py), and the v1 stream's frames and their ids (render.py)."""

import json
from typing import Any

import pytest

from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.langgraph.state import ai_message_id, thread_values, tool_message_id
from tokentail.gateway.protocols.langgraph.v1.render import LangGraphEvents, check_modes, framed
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.renderer import Position
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.errors import InvalidInput, InvalidLastEventId
from tokentail.shared.vocabulary.events import Gap
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord

pytestmark = pytest.mark.langgraph


def stored(*events: tuple[str, str, dict[str, Any]]) -> list[StoredEvent]:
    return [
        StoredEvent(seq, kind.encode(), json.dumps({"run_id": run_id, **data}).encode(), 0)
        for seq, (kind, run_id, data) in enumerate(events, start=1)
    ]


def session(*runs: RunRecord) -> SessionRecord:
    return SessionRecord(session_id="s_x", created_at=0, runs=list(runs))


TURN: list[tuple[str, str, dict[str, Any]]] = [
    ("run.queued", "r_1", {"input": "clean up"}),
    ("run.started", "r_1", {"attempt": 1}),
    ("message.delta", "r_1", {"text": "Checking"}),
    ("message.delta", "r_1", {"text": ". "}),
    ("tool.started", "r_1", {"call_id": "c1", "name": "delete", "arguments": {"n": 3}}),
    ("tool.completed", "r_1", {"call_id": "c1", "result": "deleted", "duration_ms": 1}),
    ("message.delta", "r_1", {"text": "Done."}),
    ("run.completed", "r_1", {"output": "Checking. Done.", "usage": {}}),
]


def test_a_turn_is_a_human_message_an_ai_message_with_its_tool_call_the_result_and_the_answer() -> None:
    values = thread_values(session(RunRecord(run_id="r_1", input="clean up", queued_seq=1)), stored(*TURN))
    human, called, result, answer = values["messages"]
    assert human["type"] == "human" and human["content"] == "clean up"
    assert called["id"] == ai_message_id("r_1", 3) and called["content"] == "Checking. "
    assert called["tool_calls"] == [{"id": "c1", "name": "delete", "args": {"n": 3}, "type": "tool_call"}]
    assert result["type"] == "tool" and result["id"] == tool_message_id("r_1", "c1")
    assert (result["tool_call_id"], result["content"], result["status"]) == ("c1", "deleted", "success")
    assert answer["id"] == ai_message_id("r_1", 7) and answer["content"] == "Done."


def test_runs_rolled_back_and_child_runs_are_left_out() -> None:
    events = stored(
        *TURN,
        ("run.queued", "r_2", {"input": "cut"}),
        ("message.delta", "r_2", {"text": "half"}),
        ("run.cancelled", "r_2", {"reason": "rolled back"}),
        ("run.queued", "r_3", {"input": "ask"}),
        ("run.spawned", "r_c", {"parent_run_id": "r_3", "agent": "a", "name": "a", "input": "x",
                                "cause": {"type": "tool_call", "call_id": "k"}}),
        ("message.delta", "r_c", {"text": "child's"}),
        ("message.delta", "r_3", {"text": "parent's"}),
    )  # fmt: skip
    runs = [
        RunRecord(run_id="r_1", input="clean up", queued_seq=1),
        RunRecord(run_id="r_2", input="cut", queued_seq=9, rolled_back=True, status="cancelled"),
        RunRecord(run_id="r_3", input="ask", queued_seq=12, status="running"),
        RunRecord(run_id="r_c", input="x", parent_run_id="r_3", depth=1, status="running"),
    ]
    texts = [message["content"] for message in thread_values(session(*runs), events)["messages"]]
    assert texts == ["clean up", "Checking. ", "deleted", "Done.", "ask", "parent's"]


def test_a_takeovers_drop_rebuilds_the_runs_messages_from_what_it_keeps() -> None:
    events = stored(
        ("run.queued", "r_1", {"input": "hi"}),
        ("message.delta", "r_1", {"text": "kept "}),
        ("message.delta", "r_1", {"text": "lost"}),
        ("run.continued", "r_1", {"attempt": 2, "from_event_id": 2}),
        ("message.delta", "r_1", {"text": "again"}),
    )
    values = thread_values(session(RunRecord(run_id="r_1", input="hi", queued_seq=1, status="running")), events)
    assert [message["content"] for message in values["messages"]] == ["hi", "kept again"]


def render(events: list[StoredEvent], modes: tuple[str, ...], **options: Any) -> list[tuple[str | None, str, Any]]:
    """The frames a stream of run r_1 sends, as (id, event, data)."""
    renderer = LangGraphEvents("t", "r_1", modes, before=[], runs=["r_1"], **options)
    body = (renderer.head(None) + renderer.batch(Batch(chunks=[Chunk(events)]))).decode()
    frames = []
    for block in body.split("\n\n")[:-1]:
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        frames.append((lines.get("id"), lines["event"], json.loads(lines["data"])))
    return frames


def test_each_frame_has_the_id_of_its_event_and_those_before_the_last_of_one_event_its_place() -> None:
    frames = render(stored(*TURN), ("messages-tuple", "updates", "values"), opening={"run_id": "r_1", "attempt": 1})
    assert frames[0] == ("0", "metadata", {"run_id": "r_1", "attempt": 1})
    ids = [frame_id for frame_id, _, _ in frames[1:]]
    assert len(ids) == len(set(ids))
    assert ("6.0", "updates") in [(frame_id, event) for frame_id, event, _ in frames]  # an event's first frame
    chunks = "".join(
        data[0]["content"] for _, event, data in frames if event == "messages" and data[0]["type"] == "AIMessageChunk"
    )
    assert chunks == "Checking. Done."
    # A resume inside event 6 (after its frame 6.0) gets the rest of it, then what follows.
    rest = render(stored(*TURN), ("messages-tuple", "updates", "values"), quiet_until=5, within=1)
    after = [(frame_id, event) for frame_id, event, _ in frames]
    assert [(frame_id, event) for frame_id, event, _ in rest] == after[after.index(("6.0", "updates")) + 1 :]


def test_a_drop_sends_no_chunk_the_client_has_and_the_values_say_what_is_kept() -> None:
    events = stored(
        ("run.queued", "r_1", {"input": "hi"}),
        ("message.delta", "r_1", {"text": "kept "}),
        ("message.delta", "r_1", {"text": "lost"}),
        ("run.continued", "r_1", {"attempt": 2, "from_event_id": 2}),
        ("message.delta", "r_1", {"text": "lost"}),  # the same text again, as a continuing agent streams it
        ("message.delta", "r_1", {"text": " more"}),
    )
    frames = render(events, ("messages-tuple", "values"))
    chunks = [data[0]["content"] for _, event, data in frames if event == "messages"]
    assert chunks == ["kept ", "lost", " more"]
    dropped = [data for frame_id, event, data in frames if event == "values" and frame_id == "4"]
    assert [message["content"] for message in dropped[0]["messages"]] == ["hi", "kept "]


def test_positions_and_modes() -> None:
    assert Position.of("12") == Position(12) and Position.of("12.0") == Position(11, 1)
    for bad in ("x", "0.1", "-2"):
        with pytest.raises(InvalidLastEventId):
            Position.of(bad)
    assert check_modes(["values", "", "values", "messages-tuple"]) == ("values", "messages-tuple")
    with pytest.raises(InvalidInput, match="served: values"):
        check_modes(["debug"])
    assert framed([("values", "{}"), ("updates", "{}")], 3) == [
        "event: values\nid: 3.0\ndata: {}\n\n",
        "event: updates\nid: 3\ndata: {}\n\n",
    ]


def test_a_trimmed_streams_head_has_ids_a_client_may_send_back_and_tells_of_the_gap_once() -> None:
    gap = Gap(reason="trimmed", first_available=4)
    modes = ("values", "custom")  # a gap is a `custom` frame
    fresh = LangGraphEvents("t", "r_1", modes, before=[], runs=["r_1"], opening={"run_id": "r_1", "attempt": 1})
    head = fresh.head(gap).decode()
    assert head.startswith("event: metadata\nid: 0\n") and "event: custom\ndata:" in head  # the gap: no id
    Position.of("0")  # what the SDK sends back if cut after the metadata: a position
    past = LangGraphEvents("t", "r_1", modes, before=[], runs=["r_1"], quiet_until=5)
    assert past.head(gap) == b""  # a join past the gap: its client was told of it
