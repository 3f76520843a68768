"""ACP's messages from a session's stored events (gateway/protocols/acp/render.py), and a prompt's content
as a run's input (methods.py): what an editor reads, for runs its connection prompted and runs it did not."""

import json
from typing import Any

import pytest

from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.acp.methods import AcpError, prompt_text
from tokentail.gateway.protocols.acp.render import AcpUpdates, question_id
from tokentail.gateway.reading.feed import Batch
from tokentail.shared.store.reads import StoredEvent

pytestmark = pytest.mark.acp

SESSION, RUN = "s_acp", "r_acp"
APPROVAL = {"type": "object", "properties": {"approved": {"type": "boolean"}}}


def stored(*events: tuple[str, dict[str, Any]]) -> list[StoredEvent]:
    return [
        StoredEvent(seq, kind.encode(), json.dumps({"run_id": RUN, **data}).encode(), seq * 1000)
        for seq, (kind, data) in enumerate(events, start=1)
    ]


EVENTS = stored(
    ("run.queued", {"input": "delete them"}),
    ("run.started", {"attempt": 1, "reason": "start"}),
    ("message.delta", {"text": "Checking"}),
    ("reasoning.delta", {"text": "hmm"}),
    ("tool.started", {"call_id": "c1", "name": "delete_files", "arguments": {"count": 3}}),
    (
        "input.required",
        {"input_id": "in_1", "kind": "approval", "prompt": "Delete?", "schema": APPROVAL, "call_id": "c1"},
    ),
    ("input.received", {"input_id": "in_1", "answer": {"approved": True}}),
    ("tool.completed", {"call_id": "c1", "result": {"deleted": 3}, "duration_ms": 1}),
    ("data.plan", {"data": {"entries": [{"content": "tidy", "priority": "high", "status": "completed"}]}}),
    ("run.completed", {"output": "Checking", "usage": {}}),
)


def rendered(updates: AcpUpdates, events: list[StoredEvent]) -> list[dict[str, Any]]:
    return [message for parts, _ in updates.rendered(Batch([Chunk(events)])) for message in parts]


def test_a_prompted_run_becomes_updates_then_its_answer_with_its_request_id() -> None:
    messages = rendered(AcpUpdates(SESSION, {RUN: [7]}), EVENTS[:5] + EVENTS[6:])  # (its question: below)
    updates = [m["params"]["update"] for m in messages if m.get("method") == "session/update"]
    assert [u["sessionUpdate"] for u in updates] == [
        "agent_message_chunk",
        "agent_thought_chunk",
        "tool_call",
        "tool_call_update",
        "plan",
    ]  # no user_message_chunk: the editor sent the prompt
    assert updates[2] == {
        "sessionUpdate": "tool_call",
        "toolCallId": "c1",
        "title": "delete_files",
        "kind": "other",
        "status": "in_progress",
        "rawInput": {"count": 3},
    }
    assert updates[3]["status"] == "completed" and updates[3]["rawOutput"] == {"deleted": 3}
    assert updates[3]["content"] == [{"type": "content", "content": {"type": "text", "text": '{"deleted": 3}'}}]
    assert messages[-1] == {"jsonrpc": "2.0", "id": 7, "result": {"stopReason": "end_turn"}}  # the id as sent: an int


def test_an_open_question_is_asked_with_its_options_and_a_run_of_another_client_shows_its_input() -> None:
    messages = rendered(AcpUpdates(SESSION), EVENTS[:6])  # not this connection's prompt; the question still open
    assert messages[0]["params"]["update"] == {
        "sessionUpdate": "user_message_chunk",
        "content": {"type": "text", "text": "delete them"},
    }
    asked = messages[-1]
    assert asked["method"] == "session/request_permission" and asked["id"] == question_id(SESSION, RUN, "in_1")
    assert asked["params"]["toolCall"] == {"toolCallId": "c1", "title": "Delete?"}
    assert [option["kind"] for option in asked["params"]["options"]] == ["allow_once", "reject_once"]
    # Answered when a stream opens after it (a load's): not asked again.
    again = rendered(AcpUpdates(SESSION, answered={"in_1"}), EVENTS)
    assert not any(m.get("method") == "session/request_permission" for m in again)


def test_a_failed_or_cancelled_run_answers_its_prompt_so() -> None:
    failed = stored(
        ("run.queued", {"input": "x"}),
        ("run.failed", {"error": {"type": "model_error", "message": "the model said no"}}),
    )
    assert rendered(AcpUpdates(SESSION, {RUN: ["p-1"]}), failed)[-1] == {
        "jsonrpc": "2.0",
        "id": "p-1",
        "error": {"code": -32603, "message": "the model said no", "data": {"type": "model_error"}},
    }
    cancelled = stored(("run.queued", {"input": "x"}), ("run.cancelled", {"reason": "cancelled"}))
    answers = rendered(AcpUpdates(SESSION, {RUN: [0, 1]}), cancelled)  # a prompt, and one that steered it
    assert [(m["id"], m["result"]) for m in answers] == [
        (0, {"stopReason": "cancelled"}),
        (1, {"stopReason": "cancelled"}),
    ]
    # An answer cut at the deployment's output bound is a turn ended at its length, as ACP says it.
    cut = stored(
        ("run.queued", {"input": "x"}),
        ("run.failed", {"error": {"type": "output_too_large", "message": "too long"}}),
    )
    assert rendered(AcpUpdates(SESSION, {RUN: ["p-2"]}), cut)[-1] == {
        "jsonrpc": "2.0",
        "id": "p-2",
        "result": {"stopReason": "max_tokens"},
    }


def test_a_prompt_s_blocks_become_its_input_and_what_is_not_taken_is_refused() -> None:
    blocks = [
        {"type": "text", "text": "Fix this"},
        {"type": "resource", "resource": {"uri": "file:///a.py", "text": "x = 1"}},
        {"type": "resource_link", "uri": "file:///b.py", "name": "b.py"},
    ]
    assert prompt_text(blocks) == "Fix this\n\nfile:///a.py:\nx = 1\n\n[b.py](file:///b.py)"
    for bad in ([], "text", [{"type": "image", "data": "", "mimeType": "image/png"}]):
        with pytest.raises(AcpError):
            prompt_text(bad)


def tree(*events: tuple[str, str, dict[str, Any]]) -> list[StoredEvent]:
    """Events of several runs: each its run's id, type and data."""
    return [
        StoredEvent(seq, kind.encode(), json.dumps({"run_id": run_id, **data}).encode(), seq * 1000)
        for seq, (run_id, kind, data) in enumerate(events, start=1)
    ]


def test_a_child_is_its_parent_s_tool_call_its_text_that_call_s_content_and_a_failed_tool_fails() -> None:
    child, spawned = "r_child", {"agent": "researcher", "name": "researcher", "input": "look"}
    events = tree(
        (RUN, "run.queued", {"input": "research"}),
        (RUN, "run.started", {"attempt": 1, "reason": "start"}),
        (RUN, "tool.started", {"call_id": "c_spawn", "name": "researcher", "arguments": {"input": "look"}}),
        (child, "run.spawned", {"parent_run_id": RUN, **spawned, "cause": {"type": "tool_call", "call_id": "c_spawn"}}),
        (child, "run.started", {"attempt": 1, "reason": "start", "parent_run_id": RUN}),
        (child, "message.delta", {"text": "Found "}),
        (child, "message.delta", {"text": "it."}),
        (child, "tool.started", {"call_id": "c_grep", "name": "grep", "arguments": {}}),
        (child, "tool.failed", {"call_id": "c_grep", "error": "no such file", "duration_ms": 1}),
        (child, "run.completed", {"output": "Found it.", "usage": {}, "parent_run_id": RUN}),
        (RUN, "tool.completed", {"call_id": "c_spawn", "result": "Found it.", "duration_ms": 3}),
        (RUN, "message.delta", {"text": "Done."}),
        (RUN, "run.completed", {"output": "Done.", "usage": {}}),
    )
    messages = rendered(AcpUpdates(SESSION, {RUN: [1]}), events)
    updates = [m["params"]["update"] for m in messages if m.get("method") == "session/update"]
    said = [u["content"]["text"] for u in updates if u["sessionUpdate"] == "agent_message_chunk"]
    assert said == ["Done."]  # the child's text is not the parent's answer...
    child_text = [u for u in updates if u["sessionUpdate"] == "tool_call_update" and u["toolCallId"] == "c_spawn"]
    assert child_text[0]["content"] == [
        {"type": "content", "content": {"type": "text", "text": "Found it."}}
    ]  # ...but its call's
    failed = next(u for u in updates if u.get("toolCallId") == "c_grep" and u["sessionUpdate"] == "tool_call_update")
    assert failed["status"] == "failed" and failed["content"][0]["content"]["text"] == "no such file"
    assert messages[-1] == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"stopReason": "end_turn"},
    }  # one answer: the prompt's run
