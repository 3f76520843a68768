"""The v2 protocol's envelopes (gateway/protocols/langgraph/v2/render.py): their ids, which a stream of
any filter, opened at any point, gives alike; a cursor's resume; the filter's channels and namespaces."""

import json
from typing import Any

import pytest

from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.langgraph.v2.render import Cursor, Filter, Part, V2Events
from tokentail.gateway.reading.feed import Batch
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.errors import InvalidLastEventId

pytestmark = pytest.mark.langgraph

RUN = "r_one"
QUESTION = {"input_id": "in_1", "kind": "approval", "prompt": "Go?", "schema": {"type": "object"}}
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("run.queued", {"input": "hi"}),
    ("run.started", {"attempt": 1}),
    ("message.delta", {"text": "Hel"}),
    ("message.delta", {"text": "lo"}),
    ("input.required", QUESTION),  # closes the block: 4 envelopes from one event
    ("input.received", {"input_id": "in_1", "answer": {"approved": True}}),
    ("run.started", {"attempt": 1, "reason": "resume"}),
    ("run.spawned", {"parent_run_id": RUN, "agent": "assistant", "name": "ask", "input": "q",
                     "cause": {"call_id": "c1"}}),
    ("run.completed", {"output": "Hello", "usage": {}}),
]  # fmt: skip
ALL = frozenset({"messages", "lifecycle", "input", "tools", "custom", "values"})
EVERYTHING = Filter(ALL)


def stored(events: list[tuple[str, dict[str, Any]]]) -> list[StoredEvent]:
    out = []
    for seq, (kind, data) in enumerate(events, start=1):
        run_id = "r_child" if kind == "run.spawned" else RUN
        out.append(StoredEvent(seq, kind.encode(), json.dumps({"run_id": run_id, **data}).encode(), seq * 1000))
    return out


def render(cursor: Cursor, filter: Filter = EVERYTHING, events: list[StoredEvent] | None = None) -> list[Part]:
    renderer = V2Events(filter, cursor)
    batch = Batch([Chunk(events or stored(EVENTS))])
    return [part for parts, _ in renderer.rendered(batch) for part in parts]


def test_ids_are_ms_and_seq_with_the_last_envelope_of_an_event_plain() -> None:
    parts = render(Cursor(0))
    asked = [p["event_id"] for p in parts if p["seq"] == 5]
    # The block's finish (2), the question, the interrupt, the values: the last has the event's plain id.
    assert asked == ["5-5.0", "5-5.1", "5-5.2", "5-5.3", "5-5"]
    methods = [p["method"] for p in parts if p["seq"] == 5]
    assert methods == ["messages", "messages", "input.requested", "lifecycle", "values"]
    assert all(p["params"]["timestamp"] == p["seq"] for p in parts)
    ids = [p["event_id"] for p in parts]
    assert len(ids) == len(set(ids))


def test_a_filter_keeps_each_envelope_s_id_and_a_question_answered_at_the_open_keeps_its_place() -> None:
    everything = {p["event_id"]: p for p in render(Cursor(0))}
    lifecycle = render(Cursor(0), Filter(frozenset({"lifecycle"})))
    assert lifecycle and all(everything[p["event_id"]] == p for p in lifecycle)
    # A stream opened after the answer (quiet up to it) shows none of what came before.
    after = render(Cursor(6))
    assert [p["seq"] for p in after][0] == 7 and all(everything[p["event_id"]] == p for p in after)


def test_a_cursor_resumes_after_an_event_or_within_one() -> None:
    assert Cursor.of("1700000000000-7") == Cursor(7)
    assert Cursor.of("1700000000000-7.1") == Cursor(6, 2)  # had envelopes 0 and 1 of event 7
    assert Cursor.of("1700000000000-7.values") == Cursor(7)
    assert Cursor.of("7") == Cursor(7)
    assert Cursor.since(7) == Cursor(6) and Cursor.since(0) == Cursor(0)  # the event of that seq again, whole
    for bad in ("abc", "1-0.0", "-1", "1-2-3"):
        with pytest.raises(InvalidLastEventId):
            Cursor.of(bad)
    within = render(Cursor.of("5-5.1"))
    assert [p["event_id"] for p in within][:3] == ["5-5.2", "5-5.3", "5-5"]


def test_a_child_run_has_a_namespace_of_its_own_which_a_filter_selects() -> None:
    started, ended = [p for p in render(Cursor(0)) if p["params"]["namespace"]]
    # Open when its parent ended: ended with it (the reducer's ChildEnded), in its namespace.
    assert ended["params"]["data"] == {"event": "failed", "error": "cancelled: parent_ended"}
    assert started["params"]["namespace"] == ["assistant:r_child"]
    assert started["params"]["data"] == {
        "event": "started",
        "graph_name": "assistant",
        "cause": {"type": "toolCall", "tool_call_id": "c1"},
    }
    only = Filter(ALL, namespaces=(("assistant",),))
    assert render(Cursor(0), only) == [started, ended]
    assert render(Cursor(0), Filter(ALL, depth=0)) == [p for p in render(Cursor(0)) if not p["params"]["namespace"]]


def test_a_custom_name_is_a_channel_of_its_own() -> None:
    events = stored(
        [("run.queued", {"input": "hi"}), ("data.chart", {"data": {"points": [1]}}), ("status", {"text": "x"})]
    )
    [chart] = render(Cursor(0), Filter(frozenset({"custom:chart"})), events)
    assert chart["params"]["data"] == {"name": "chart", "payload": {"points": [1]}}
    assert len(render(Cursor(0), Filter(frozenset({"custom"})), events)) == 2
