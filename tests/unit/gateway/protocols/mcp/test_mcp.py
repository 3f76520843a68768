"""What a run is on MCP's wire (gateway/protocols/mcp/render.py): a task at each status, a question as an
elicitation and its answer back, and the progress messages of a run a tool call waits for."""

import json
import sys
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from tokentail.gateway.commands.tasks import Task
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols import _mcp_router
from tokentail.gateway.protocols.mcp import render as mcp
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import ErrorInfo
from tokentail.shared.vocabulary.records import Question, RunRecord, SessionRecord

pytestmark = pytest.mark.mcp


SESSION = "s_" + "a" * 22
RUN = "r_" + "b" * 12
APPROVAL = {"type": "object", "properties": {"approved": {"type": "boolean"}}, "required": ["approved"]}


def task(**run: Any) -> Task:
    record = RunRecord(run_id=RUN, input="hi", queued_at=1_764_000_000.0, **run)
    return Task(SessionRecord(session_id=SESSION, created_at=1_764_000_000.0, runs=[record]), record)


def question(schema: dict[str, Any]) -> Question:
    return Question.model_validate({"input_id": "in_1", "kind": "json", "prompt": "Which?", "schema": schema})


def test_a_task_created_is_flat_with_integer_milliseconds() -> None:
    created = mcp.created(task(status="running"), ttl_seconds=86_400)
    assert created == {
        "resultType": "task",
        "taskId": SESSION + RUN,
        "status": "working",
        "createdAt": "2025-11-24T16:00:00.000Z",
        "lastUpdatedAt": "2025-11-24T16:00:00.000Z",
        "ttlMs": 86_400_000,
        "pollIntervalMs": mcp.POLL_INTERVAL_MS,
    }


def test_a_task_s_outcome_inline_the_agent_s_failure_a_tool_error_tokentail_s_a_protocol_one() -> None:
    done = mcp.detailed(task(status="completed", output="Sunny."), 60)
    assert done["status"] == "completed" and "error" not in done
    assert done["result"] == {
        "resultType": "complete",
        "content": [{"type": "text", "text": "Sunny."}],
        "isError": False,
    }
    own = mcp.detailed(task(status="failed", error=ErrorInfo(type="agent_error", message="boom")), 60)
    assert own["status"] == "completed" and own["result"]["isError"] is True
    assert own["result"]["content"] == [{"type": "text", "text": "boom"}]
    ours = mcp.detailed(task(status="failed", error=ErrorInfo(type="timeout", message="too long")), 60)
    assert ours["status"] == "failed" and "result" not in ours
    assert ours["error"] == {"code": -32603, "message": "too long", "data": {"type": "timeout"}}
    assert set(mcp.detailed(task(status="cancelled"), 60)) == set(mcp.created(task(), 60)) - {"resultType"}


def test_a_question_is_an_elicitation_its_answer_taken_back_out_of_the_form() -> None:
    approval = question(APPROVAL)
    waiting = mcp.detailed(task(status="waiting", asked=[approval], waiting_for="in_1"), 60)
    assert waiting["status"] == "input_required"
    request = {"mode": "form", "message": "Which?", "requestedSchema": APPROVAL}
    assert waiting["inputRequests"] == {"in_1": {"method": "elicitation/create", "params": request}}
    assert mcp.answer_of("in_1", approval, {"in_1": {"action": "accept", "content": {"approved": True}}}) == (
        True,
        {"approved": True},
    )
    assert mcp.answer_of("in_1", approval, {"other": {"action": "accept", "content": {}}}) == (False, None)
    with pytest.raises(mcp.Declined):
        mcp.answer_of("in_1", approval, {"in_1": {"action": "decline"}})

    choice = question({"type": "string", "enum": ["red", "blue"]})  # not an object: asked as one field
    (asked,) = mcp.input_requests({"in_1": (RunRecord(run_id=RUN, input="hi"), choice)}).values()
    assert asked["params"]["requestedSchema"] == {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["red", "blue"]}},
        "required": ["answer"],
    }
    assert mcp.answer_of("in_1", choice, {"in_1": {"action": "accept", "content": {"answer": "red"}}}) == (True, "red")


CHILD = "r_" + "c" * 12
GRANDCHILD = "r_" + "d" * 12


def tree(parent: dict[str, Any], *children: dict[str, Any]) -> Task:
    """A task whose run started `children` (each a record's fields), the first of them the second."""
    records = [RunRecord(run_id=RUN, input="hi", queued_at=1_764_000_000.0, **parent)]
    records += [RunRecord(input="sub", parent_run_id=RUN, **child) for child in children]
    return Task(SessionRecord(session_id=SESSION, created_at=1_764_000_000.0, runs=records), records[0])


def test_a_child_run_s_question_is_the_task_s_keyed_with_the_child_s_run_id() -> None:
    approval = question(APPROVAL)
    asking = {"run_id": CHILD, "status": "waiting", "asked": [approval], "waiting_for": "in_1"}
    waiting = tree({"status": "waiting", "children": [CHILD], "awaiting": [CHILD]}, asking)
    shown = mcp.detailed(waiting, 60)
    assert shown["status"] == "input_required"
    request = {"mode": "form", "message": "Which?", "requestedSchema": APPROVAL}
    assert shown["inputRequests"] == {f"{CHILD}:in_1": {"method": "elicitation/create", "params": request}}
    (run, asked) = mcp.questions(waiting)[f"{CHILD}:in_1"]
    assert (run.run_id, asked) == (CHILD, approval)
    assert mcp.answer_of(f"{CHILD}:in_1", approval, {"in_1": {"action": "accept", "content": {}}}) == (False, None)


def test_a_task_waiting_for_its_children_works_and_shows_no_question_of_one_that_ended() -> None:
    approval = question(APPROVAL)
    going = {"run_id": CHILD, "status": "running", "children": [GRANDCHILD]}
    asking = {"run_id": GRANDCHILD, "status": "waiting", "asked": [approval], "waiting_for": "in_1"}
    parent = {"status": "waiting", "children": [CHILD], "awaiting": [CHILD]}
    assert mcp.status(tree(parent)) == "working"  # waiting for its children is no question
    assert mcp.status(tree({"status": "queued"})) == "working"  # MCP has no `submitted`
    assert list(mcp.questions(tree(parent, going, asking))) == [f"{GRANDCHILD}:in_1"]  # a grandchild's too
    ended = {**asking, "status": "cancelled"}  # its questions left in its record
    assert mcp.detailed(tree(parent, going, ended), 60)["status"] == "working"
    assert not mcp.questions(tree({"status": "cancelled", "children": [CHILD]}, going, asking))  # the task ended


def test_a_task_s_questions_list_a_child_s_branch_before_its_next_sibling() -> None:
    """Depth first in the order spawned (shared/vocabulary/run_tree.py): the input requests' keys keep it."""
    sibling = "r_" + "e" * 12
    asking = {"status": "waiting", "asked": [question(APPROVAL)], "waiting_for": "in_1"}
    parent = {"status": "waiting", "children": [CHILD, sibling], "awaiting": [CHILD, sibling]}
    going = {"run_id": CHILD, "status": "waiting", "children": [GRANDCHILD], "awaiting": [GRANDCHILD]}
    waiting = tree(parent, going, {"run_id": sibling, **asking}, {"run_id": GRANDCHILD, **asking})
    assert list(mcp.questions(waiting)) == [f"{GRANDCHILD}:in_1", f"{sibling}:in_1"]
    assert list(mcp.detailed(waiting, 60)["inputRequests"]) == [f"{GRANDCHILD}:in_1", f"{sibling}:in_1"]


def test_progress_tells_a_waiting_call_the_run_s_text_tools_and_question() -> None:
    events: list[tuple[str, dict[str, Any]]] = [
        ("run.queued", {"input": "hi"}),
        ("run.started", {"attempt": 1}),
        ("message.delta", {"text": "Looking "}),
        ("tool.started", {"call_id": "c1", "name": "lookup", "arguments": {}}),
        ("tool.completed", {"call_id": "c1", "result": 3, "duration_ms": 5}),
        ("status", {"text": "almost"}),
        ("input.required", {"input_id": "in_1", "kind": "text", "prompt": "Which city?", "schema": {}}),
    ]
    stored = [
        StoredEvent(seq, kind.encode(), json.dumps({"run_id": RUN, **data}).encode(), 0)
        for seq, (kind, data) in enumerate(events, start=1)
    ]
    progress = mcp.Progress(Reducer(run_id=RUN))
    told = [message for messages, _ in progress.rendered(Batch([Chunk(stored)])) for message in messages]
    assert told == ["Looking ", "calling lookup", "almost", "Which city?"]
    assert not progress.finished  # stopped at a question: the run goes on after its answer


def test_progress_tells_of_a_child_run_its_parent_s_call_of_it_and_its_question() -> None:
    spawned = {"parent_run_id": RUN, "agent": "helper", "name": "helper", "input": "sub"}
    events: list[tuple[str, dict[str, Any]]] = [
        ("run.queued", {"run_id": RUN, "input": "hi"}),
        ("run.started", {"run_id": RUN, "attempt": 1}),
        ("tool.started", {"run_id": RUN, "call_id": "c1", "name": "helper", "arguments": {"input": "sub"}}),
        ("run.spawned", {"run_id": CHILD, **spawned, "cause": {"type": "tool_call", "call_id": "c1"}}),
        ("run.started", {"run_id": CHILD, "parent_run_id": RUN, "attempt": 1}),
        ("message.delta", {"run_id": CHILD, "text": "thinking"}),
        ("input.required", {"run_id": CHILD, "input_id": "in_1", "kind": "text", "prompt": "Sure?", "schema": {}}),
    ]
    stored = [
        StoredEvent(seq, kind.encode(), json.dumps(data).encode(), 0) for seq, (kind, data) in enumerate(events, 1)
    ]
    progress = mcp.Progress(Reducer(run_id=RUN))
    told = [message for messages, _ in progress.rendered(Batch([Chunk(stored)])) for message in messages]
    assert told == ["calling helper", "Sure?"]  # the child's own text is its parent's to tell


async def test_without_the_mcp_extra_the_endpoint_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    package = "tokentail.gateway.protocols.mcp"
    for name in [name for name in sys.modules if name.partition(".")[0] == "mcp" or name.startswith(f"{package}.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if not installed: importing it raises ModuleNotFoundError
    for module in ("routes", "tasks", "render"):  # else `from <package> import routes` finds it imported
        monkeypatch.delattr(sys.modules[package], module, raising=False)
    app = FastAPI()
    app.include_router(_mcp_router())
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway") as client:
        answer = await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 501
    assert "pip install 'tokentail[mcp]'" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("error_type", "agents_own"),
    [
        ("agent_error", True),
        ("internal_error", True),
        ("invalid_request", True),
        ("rate_limited", True),
        ("timeout", False),
        ("attempts_exhausted", False),
        ("event_too_large", False),
        ("input_expired", False),
    ],
)
def test_a_failure_is_the_agents_own_unless_a_bound_or_lost_workers_ended_it(error_type: str, agents_own: bool) -> None:
    failed = task(status="failed", error=ErrorInfo(type=error_type, message="m"))
    assert failed.agent_failed is agents_own
    assert task(status="completed").agent_failed is False
