"""A response's output items (gateway/protocols/responses/output.py): what the events of an item say,
and what the Response object's `output` keeps. test_responses.py, beside it, plays whole runs."""

import pytest

from tokentail.gateway.protocols.responses.output import Numbering, ResponseOutput
from tokentail.gateway.reducer.operations import BlockAppended

pytestmark = pytest.mark.responses


def test_an_item_s_events_share_the_response_s_numbers_and_carry_copies() -> None:
    numbering = Numbering()
    numbering.event("response.created")
    output = ResponseOutput(numbering)
    opened = output.open("text", 3)
    deltas = [output.delta("text", "Hel"), output.delta("text", "lo")]
    output.passed(["!"])  # a resume's: its client has it
    closed = output.close("completed")
    assert [(e["type"], e["sequence_number"]) for e in [*opened, *deltas, *closed]] == [
        ("response.output_item.added", 1), ("response.content_part.added", 2),
        ("response.output_text.delta", 3), ("response.output_text.delta", 4),
        ("response.output_text.done", 5), ("response.content_part.done", 6), ("response.output_item.done", 7),
    ]  # fmt: skip
    assert opened[0]["item"]["content"] == [] and opened[1]["part"]["text"] == ""
    assert closed[0]["text"] == "Hello!" and closed[-1]["item"]["status"] == "completed"
    output.listed()[0]["content"][0]["text"] = "changed"
    assert closed[-1]["item"]["content"][0]["text"] == "Hello!"


def test_a_drop_leaves_out_the_items_opened_after_it_and_ends_the_open_one_with_the_text_kept() -> None:
    output = ResponseOutput(Numbering())
    output.add_call("fc_2", "call_1", "search", '{"q":"x"}')
    output.open("text", 4)
    output.delta("text", "Kept, then cut")
    output.open("reasoning", 9)  # the text item is done; this one a takeover drops
    output.delta("reasoning", "lost")
    parts = output.drop(6, (BlockAppended("r", "text", 4, "Kept", 5),))
    assert parts[-1]["type"] == "response.output_item.done" and parts[-1]["item"]["status"] == "incomplete"
    assert [(item["id"], item.get("status")) for item in output.listed()] == [
        ("fc_2", "completed"),
        ("msg_4", "completed"),
    ]
    assert output.listed()[1]["content"][0]["text"] == "Kept" and not output.is_open
