"""The `ai` package's own reader of a UI message stream (`readUIMessageStream`: what `useChat` builds
its message with, every chunk checked against the SDK's schema) over the streams tokentail makes of a
sub-agent tree (tests/unit/gateway/protocols/ai_sdk/test_ai_sdk_subagents.py: the same sessions, what
each stream holds)."""

from pathlib import Path
from typing import Any

import pytest

from tests.node.conftest import run_node
from tests.unit.gateway.protocols.ai_sdk.test_ai_sdk_subagents import body
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

pytestmark = pytest.mark.ai_sdk


def read(stream: bytes, tmp_path: Path) -> dict[str, Any]:
    file = tmp_path / "body.txt"
    file.write_bytes(stream)
    result: dict[str, Any] = run_node("ai_sdk_read.mjs", "read", {"file": str(file)}).result
    assert (result["errors"], result["invalid"]) == ([], [])
    return result


def tool_parts(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {part["toolCallId"]: part for part in result["message"]["parts"] if "toolCallId" in part}


@pytest.mark.parametrize("per_read", [1, len(TWO_CHILDREN)], ids=["live", "caught up in one read"])
def test_the_sdk_builds_each_child_as_its_call_s_output(per_read: int, tmp_path: Path) -> None:
    result = read(body(TWO_CHILDREN, per_read), tmp_path)
    calls = tool_parts(result)
    assert calls["c1"]["state"] == "output-available" and not calls["c1"].get("preliminary")
    assert calls["c1"]["output"]["parts"] == [{"type": "text", "text": "a1a2", "state": "done"}]
    assert calls["c2"]["state"] == "output-error" and calls["c2"]["errorText"] == "agent_error: no"
    texts = [part["text"] for part in result["message"]["parts"] if part["type"] == "text"]
    assert texts == ["Asking two.", "Done."]  # no child's text in the parent's message
    seen = [(output["preliminary"], output["texts"]) for output in result["outputs"] if output["toolCallId"] == "c1"]
    if per_read == 1:  # a live client sees the child stream, preliminary, then its end
        assert seen == [(True, []), (True, ["a1"]), (True, ["a1a2"]), (False, ["a1a2"])]


def test_the_sdk_builds_a_grandchild_and_a_parent_s_reset_step(tmp_path: Path) -> None:
    events = session(
        *START,
        text(PARENT, "p "),
        *spawn(PARENT, A, "c1"),
        *spawn(A, GRAND, "g1"),
        text(GRAND, "deep"),
        text(PARENT, "late"),
        (PARENT, "run.continued", {"attempt": 2, "from_event_id": 9}),  # drops the parent's "late"
        completed(GRAND, "deep", A),
        (A, "tool.completed", {"call_id": "g1", "result": "deep", "duration_ms": 1}),
        completed(A, "deep", PARENT),
        (PARENT, "tool.completed", {"call_id": "c1", "result": "deep", "duration_ms": 1}),
        completed(PARENT, "p done"),
    )
    result = read(body(events), tmp_path)
    child = tool_parts(result)["c1"]
    assert child["state"] == "output-available" and not child.get("preliminary")
    [grand] = [part for part in child["output"]["parts"] if part.get("toolCallId") == "g1"]
    assert grand["output"]["parts"] == [{"type": "text", "text": "deep", "state": "done"}]
    assert [part["text"] for part in result["message"]["parts"] if part["type"] == "text"] == ["p "]
