"""The Responses API encoding: what a run's stored events become, each event validated by the
`openai` SDK's own models (strictly: the SDK itself builds them without validating). The SDK's
clients read these over real gateways in tests/integration/test_openai_responses.py and tests/node."""

from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.unit.gateway.protocols.test_ui_protocols import EVENTS, RUN, _taken_over, sse_data, stored, translate
from tokentail.gateway.protocols.responses.render import ResponseEvents
from tokentail.shared.vocabulary.events import Gap

pytestmark = pytest.mark.responses


EVENT = TypeAdapter[Any](ResponseStreamEvent)
HEADER: dict[str, Any] = {
    "id": "resp_x",
    "model": "scripted",
    "metadata": {},
    "previous_response_id": None,
    "created_at": 1.0,
}


def events_of(body: bytes) -> list[dict[str, Any]]:
    parsed = sse_data(body)
    for event in parsed:
        EVENT.validate_python(event)
    return parsed


def test_a_run_with_a_takeover_tools_reasoning_and_text() -> None:
    events = events_of(translate(ResponseEvents(RUN, 0, HEADER), stored(EVENTS)))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created", "response.queued", "response.in_progress",
        # the first attempt's text, then its item ends incomplete at the takeover
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        # the second attempt: reasoning, two tool calls and their outputs, then the text
        "response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert events[8]["item"]["status"] == "incomplete" and events[8]["output_index"] == 0
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "completed" and final.output_text == "Sunny."
    assert [item.type for item in final.output] == [
        "reasoning", "function_call", "function_call_output", "function_call", "function_call_output", "message"
    ]  # fmt: skip  # the dead attempt's message is left out
    assert [index for e in events if (index := e.get("output_index")) is not None] == sorted(
        index for e in events if (index := e.get("output_index")) is not None
    ), "no output_index is used again after a later one"
    assert final.output[2].output == '{"found":3}' and final.output[4].output == '{"error":"boom"}'  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.total_tokens == 5


def test_a_replay_numbers_its_events_the_same_and_starting_after_sends_what_follows() -> None:
    whole = events_of(translate(ResponseEvents(RUN, 0, HEADER), stored(EVENTS)))
    for n in (-1, 0, 5, 20, len(whole) - 2, len(whole) - 1):
        after = events_of(translate(ResponseEvents(RUN, 0, HEADER, starting_after=n), stored(EVENTS)))
        assert after == whole[n + 1 :]


def test_other_runs_are_left_out_and_a_failure_or_cancel_ends_the_response() -> None:
    other = stored([("message.delta", {"text": "not mine"})], run_id="r_other", first=1)
    mine = stored([("run.queued", {"input": "x"}), ("run.started", {"attempt": 1}), ("message.delta", {"text": "Hi"})])
    failed = stored([("run.failed", {"error": {"type": "provider_error", "message": "down"}})], first=4)
    events = events_of(translate(ResponseEvents(RUN, 0, HEADER), [*other, *mine, *failed]))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "provider_error: down"}
    assert all("not mine" not in str(event) for event in events)
    cancelled = stored([("run.cancelled", {"reason": "cancelled by request"})], first=4)
    events = events_of(translate(ResponseEvents(RUN, 0, HEADER), [*mine, *cancelled]))
    assert events[-1]["type"] == "response.incomplete" and events[-1]["response"]["status"] == "cancelled"
    assert events[-2]["item"]["status"] == "incomplete"


def test_a_question_ends_the_segment_and_its_answer_opens_the_next() -> None:
    asked: list[tuple[str, dict[str, Any]]] = [
        ("run.queued", {"input": "delete?"}),
        ("run.started", {"attempt": 1}),
        ("tool.started", {"call_id": "c1", "name": "delete_files", "arguments": {"count": 3}}),
        ("input.required", {"input_id": "in_1", "kind": "approval", "prompt": "Delete?", "schema": {},
                            "call_id": "c1"}),
        ("input.received", {"input_id": "in_1", "answer": {"approved": True}}),
        ("run.started", {"attempt": 1, "reason": "resume"}),
        ("tool.completed", {"call_id": "c1", "result": "deleted", "duration_ms": 3}),
        ("input.required", {"input_id": "in_2", "kind": "text", "prompt": "Why?", "schema": {"type": "string"}}),
    ]  # fmt: skip
    first = ResponseEvents(RUN, 0, HEADER)
    events = events_of(translate(first, stored(asked)))
    assert first.finished and events[-1]["type"] == "response.completed"
    request = events[-1]["response"]["output"][-1]
    assert request == {
        "type": "mcp_approval_request", "id": "in_1", "name": "delete_files", "arguments": '{"count":3}',
        "server_label": "tokentail",
    }  # fmt: skip
    second = ResponseEvents(RUN, 1, {**HEADER, "id": "resp_x.1"})
    events = events_of(translate(second, stored(asked)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[0]["sequence_number"] == 0
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["function_call_output", "function_call"]
    assert output[1]["name"] == "tokentail_input" and output[1]["call_id"] == "in_2"


def test_a_gap_is_an_error_event() -> None:
    events = events_of(ResponseEvents(RUN, 0, HEADER).head(Gap(reason="trimmed", first_available=40)))
    assert events == [
        {
            "type": "error",
            "code": "gap",
            "message": "events were lost before this response: trimmed, first available 40",
            "param": None,
            "sequence_number": 0,
        }
    ]


def test_a_continued_run_goes_on_in_its_item_and_a_cut_turn_s_item_ends_incomplete_and_is_left_out() -> None:
    went_on = events_of(translate(ResponseEvents(RUN, 0, HEADER), _taken_over(7)))
    final = Response.model_validate(went_on[-1]["response"])
    assert final.output_text == "Checking.It is noon." and all(
        e["item"]["status"] == "completed" for e in went_on if e["type"] == "response.output_item.done"
    )
    restarted = events_of(translate(ResponseEvents(RUN, 0, HEADER), _taken_over(5)))
    done = [e["item"] for e in restarted if e["type"] == "response.output_item.done" and e["item"]["type"] == "message"]
    assert [(item["id"], item["status"]) for item in done] == [
        ("msg_3", "completed"),
        ("msg_6", "incomplete"),
        ("msg_9", "completed"),
    ]
    final = Response.model_validate(restarted[-1]["response"])
    assert [item.id for item in final.output if item.type == "message"] == ["msg_3", "msg_9"]
    assert final.output_text == "Checking.It is noon."
