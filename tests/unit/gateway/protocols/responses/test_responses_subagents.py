"""OpenAI's Responses API from a session's sub-agent tree: the parent's response shows a child as
the function call it is (the parent's tool.started, tool.completed) and its output; the child's own
text, tools and questions are not the parent's response's (a client following a child reads the
native API: docs/subagents.md)."""

from typing import Any

import pytest
from openai.types.responses import Response

from tests.unit.gateway.protocols.responses.test_responses import HEADER, events_of
from tests.unit.gateway.protocols.test_ui_protocols import translate
from tests.unit.gateway.reducer.test_reducer_tree import PARENT, START, TWO_CHILDREN, A, session, spawn, text
from tokentail.gateway.protocols.responses.render import ResponseEvents

pytestmark = pytest.mark.responses


def response_events(**kwargs: Any) -> list[dict[str, Any]]:
    return events_of(translate(ResponseEvents(PARENT, 0, HEADER, **kwargs), TWO_CHILDREN))


def test_a_child_is_its_parent_s_function_call_and_output_and_its_text_is_not_the_parent_s() -> None:
    events = response_events()
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "completed" and final.output_text == "Asking two.Done."
    assert [(item.type, getattr(item, "call_id", None)) for item in final.output] == [
        ("message", None),
        ("function_call", "c1"),
        ("function_call", "c2"),
        ("function_call_output", "c1"),
        ("function_call_output", "c2"),
        ("message", None),
    ]
    outputs = [item.output for item in final.output if item.type == "function_call_output"]
    assert outputs == ["a1a2", '{"error":"no"}']
    deltas = [event["delta"] for event in events if event["type"].endswith(".delta")]
    assert all("a1" not in delta and "b1" not in delta and "hmm" not in delta for delta in deltas)


def test_starting_after_any_event_sends_what_follows_with_children_interleaved() -> None:
    whole = response_events()
    for n in range(-1, len(whole)):
        assert response_events(starting_after=n) == whole[n + 1 :], n


def test_a_child_s_question_does_not_end_the_parent_s_response() -> None:
    question = {"input_id": "in_1", "kind": "text", "prompt": "which?", "schema": {}}
    stored = session(*START, text(PARENT, "Asking."), *spawn(PARENT, A, "c1"), (A, "input.required", question))
    events = events_of(translate(ResponseEvents(PARENT, 0, HEADER), stored))
    assert events[-1]["type"] == "response.output_item.done"  # the parent's function call; the response goes on
    assert not any(event["type"] == "response.completed" for event in events)
