"""The AI SDK's sub-agent pattern (ai-sdk.dev/v7/docs/agents/subagents) from a session's sub-agent
tree: a child run is its parent's tool call, its own UIMessage the call's preliminary outputs while
it streams, then the final one. tests/node/test_ai_sdk_subagents.py reads the same streams with the
`ai` package's own reader."""

import json
from typing import Any

import pytest

from tests.unit.gateway.reducer.test_reducer_tree import (
    GRAND,
    PARENT,
    START,
    TWO_CHILDREN,
    A,
    completed,
    session,
    spawn,
    text,
)
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.ai_sdk.render import UiMessageStream
from tokentail.gateway.reading.feed import Batch
from tokentail.shared.store.reads import StoredEvent

pytestmark = pytest.mark.ai_sdk

Json = dict[str, Any]


def body(events: list[StoredEvent], per_read: int = 1, **kwargs: Any) -> bytes:
    """The response's body, the events coming `per_read` to a read (a live tail: 1; a catch-up: many)."""
    renderer = UiMessageStream(PARENT, **kwargs)
    out = renderer.head(None)
    for at in range(0, len(events), per_read):
        out += renderer.batch(Batch([Chunk(events[at : at + per_read])]))
        if renderer.finished:
            break
    return out + renderer.tail()


def parts(events: list[StoredEvent], per_read: int = 1, **kwargs: Any) -> list[Json]:
    frames = body(events, per_read, **kwargs).decode().split("\n\n")
    return [json.loads(frame[6:]) for frame in frames if frame.startswith("data: {")]


def outputs(sent: list[Json], call_id: str) -> list[tuple[bool, list[str]]]:
    """The outputs sent for a call: (preliminary, the texts of the child's message)."""
    return [
        (part.get("preliminary", False), [inner.get("text", inner["type"]) for inner in part["output"]["parts"]])
        for part in sent
        if part["type"] == "tool-output-available" and part["toolCallId"] == call_id
    ]


def test_a_child_is_its_call_s_preliminary_messages_then_the_final_one_and_the_parent_s_result_adds_none() -> None:
    sent = parts(TWO_CHILDREN)
    assert outputs(sent, "c1") == [
        (True, []),  # started
        (True, ["a1"]),
        (True, ["a1a2"]),
        (False, ["a1a2"]),  # its end: the final output; the parent's tool.completed sends no other
    ]
    final = [part for part in sent if part["toolCallId" if "toolCallId" in part else "type"] == "c1"][-1]
    assert final["output"] == {
        "id": A,
        "role": "assistant",
        "parts": [{"type": "text", "text": "a1a2", "state": "done"}],
    }
    # B failed: its call's error, once (its parent's tool.failed adds none).
    errors = [part for part in sent if part["type"] == "tool-output-error"]
    assert errors == [{"type": "tool-output-error", "toolCallId": "c2", "errorText": "agent_error: no"}]
    assert outputs(sent, "c2")[-1] == (True, ["b1", "hmm", "b2"])
    # No child's text in the parent's own parts.
    assert [part["delta"] for part in sent if part["type"] == "text-delta"] == ["Asking two.", "Done."]


def test_what_changes_in_one_read_goes_out_once_and_a_catch_up_needs_only_the_last() -> None:
    live = outputs(parts(TWO_CHILDREN), "c2")
    caught_up = outputs(parts(TWO_CHILDREN[:14], per_read=14), "c2")
    assert caught_up == [live[-1]] == [(True, ["b1", "hmm", "b2"])]  # one snapshot holds all
    # Every change reaches a live client: a delta each.
    assert [texts for _, texts in live] == [[], ["b1"], ["b1", "hmm"], ["b1", "hmm", "b2"]]


def test_a_grandchild_is_a_tool_call_of_its_parent_s_message() -> None:
    sent = parts(
        session(
            *START,
            *spawn(PARENT, A, "c1"),
            text(A, "asking "),
            *spawn(A, GRAND, "g1"),
            text(GRAND, "deep"),
            completed(GRAND, "deep", A),
            (A, "tool.completed", {"call_id": "g1", "result": "deep", "duration_ms": 1}),
            completed(A, "asking deep", PARENT),
            completed(PARENT, "done"),
        )
    )
    final = [part for part in sent if part.get("toolCallId") == "c1"][-1]
    assert "preliminary" not in final
    call = final["output"]["parts"][1]
    assert call["type"] == "tool-researcher" and call["toolCallId"] == "g1" and call["state"] == "output-available"
    assert call["preliminary"] is False
    assert call["output"] == {
        "id": GRAND,
        "role": "assistant",
        "parts": [{"type": "text", "text": "deep", "state": "done"}],
    }
    # While the grandchild streamed, its message was the call's preliminary output inside A's.
    streaming = next(
        part
        for part in sent
        if part.get("preliminary")
        and len(part["output"]["parts"]) == 2
        and part["output"]["parts"][1].get("output", {}).get("parts")
    )
    assert streaming["output"]["parts"][1]["preliminary"] is True


def test_a_child_taken_over_shows_what_it_keeps_and_a_parent_s_reset_step_sends_its_children_again() -> None:
    events = session(
        *START,
        text(PARENT, "p "),  # 3
        *spawn(PARENT, A, "c1"),  # 4, 5, 6
        text(A, "kept "),  # 7
        text(A, "cut"),  # 8
        (A, "run.continued", {"attempt": 2, "from_event_id": 7, "parent_run_id": PARENT}),  # 9
        text(A, "again"),  # 10
        text(PARENT, "late"),  # 11
        (PARENT, "run.continued", {"attempt": 2, "from_event_id": 10}),  # 12: drops the parent's "late"
        completed(A, "kept again", PARENT),  # 13
    )
    sent = parts(events)
    assert outputs(sent, "c1") == [
        (True, []),
        (True, ["kept "]),
        (True, ["kept cut"]),
        (True, ["kept "]),  # the child's drop: its own only
        (True, ["kept ", "again"]),
        (True, ["kept ", "again"]),  # after the parent's reset-step, which dropped the call's output with its step
        (False, ["kept ", "again"]),
    ]
    reset = sent.index({"type": "reset-step"})
    assert [part["type"] for part in sent[reset:]][:6] == [
        "reset-step", "text-start", "text-delta", "text-end", "tool-input-start", "tool-input-available",
    ]  # fmt: skip


def test_a_child_s_question_does_not_end_the_response() -> None:
    question = {"input_id": "in_1", "kind": "text", "prompt": "which?", "schema": {}}
    sent = parts(session(*START, *spawn(PARENT, A, "c1"), (A, "input.required", question), text(A, "more")))
    assert not any(part["type"] == "finish" for part in sent)
    last = outputs(sent, "c1")[-1]
    assert last == (True, ["data-input", "more"])


def test_what_a_client_receives_of_a_long_child_grows_with_what_it_wrote_not_its_square() -> None:
    """A child writing 100 KB a delta per read: each read's whole snapshot would cost 1,000 times 50 KB;
    spaced out as the child grows, its outputs cost a few times its answer, and a live client still
    sees it grow (at every read while it is short), then ends with its whole message."""
    deltas = [f"{i:04d}" + "x" * 96 for i in range(1000)]
    answer = "".join(deltas)
    events = session(
        *START, *spawn(PARENT, A, "c1"), *(text(A, delta) for delta in deltas), completed(A, answer, PARENT)
    )
    sent = body(events)
    assert len(sent) < 8 * len(answer), f"{len(sent) / len(answer):.1f} times the answer"
    seen = outputs(parts(events), "c1")
    assert seen[-1] == (False, [answer])
    shown = [texts[0] for preliminary, texts in seen if preliminary and texts]
    assert shown[:10] == ["".join(deltas[: i + 1]) for i in range(10)], "each read while it is short"
    assert len(shown) >= 30 and all(answer.startswith(text) for text in shown)


def test_a_child_s_question_goes_out_at_once_however_long_the_child() -> None:
    question = {"input_id": "in_1", "kind": "text", "prompt": "which?", "schema": {}}
    long = [text(A, "y" * 100) for _ in range(200)]
    sent = parts(session(*START, *spawn(PARENT, A, "c1"), *long, (A, "input.required", question)))
    assert outputs(sent, "c1")[-1] == (True, ["y" * 20_000, "data-input"])
