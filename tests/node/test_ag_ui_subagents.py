"""@ag-ui/client's own verifier (the one its agents run every stream through: it rejects an event
whose subagent disagrees with its opener, a subagent finished that was not started, a run finished
with one still open) over the AG-UI streams tokentail makes of a sub-agent tree
(tests/unit/gateway/protocols/ag_ui/test_ag_ui_subagents.py: the same sessions, what each stream holds)."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.clients.sse_client import read_events
from tests.node.conftest import run_node
from tests.unit.gateway.protocols.ag_ui.test_ag_ui_subagents import ANSWERED_WHILE_STREAMING, ASKING, CANCELLED, stream
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
from tokentail.shared.store.reads import SessionStore, StoredEvent

pytestmark = pytest.mark.ag_ui

GRANDCHILD = session(
    *START,
    *spawn(PARENT, A, "c1"),
    (A, "tool.started", {"call_id": "c1", "name": "clock", "arguments": {}}),
    (A, "tool.completed", {"call_id": "c1", "result": "noon", "duration_ms": 1}),
    *spawn(A, GRAND, "g1"),
    text(GRAND, "deep"),
    text(A, "side"),
    completed(GRAND, "deep", A),
    completed(A, "deep", PARENT),
    completed(PARENT, "deep"),
)
TAKEN_OVER = session(
    *START,
    *spawn(PARENT, A, "c1"),
    text(A, "kept "),
    text(A, "cut"),
    (A, "run.continued", {"attempt": 2, "from_event_id": 6, "parent_run_id": PARENT}),
    text(A, "again"),
    completed(A, "kept again", PARENT),
    completed(PARENT, "done"),
)

# The session's next run, with a child of its own: a thread's stream carries several AG-UI runs.
THREAD = TWO_CHILDREN[:-1] + session(
    ("r_next", "run.queued", {"input": "again"}),
    ("r_next", "run.started", {"attempt": 1}),
    *spawn("r_next", "r_childNNNNNN", "c1"),
    text("r_childNNNNNN", "n"),
    completed("r_childNNNNNN", "n", "r_next"),
    completed("r_next", "n"),
    first=len(TWO_CHILDREN),
)


def verified(events: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    file = tmp_path / "events.json"
    file.write_text(json.dumps(events))
    result: dict[str, Any] = run_node("ag_ui_verify.mjs", "verify", {"file": str(file)}).result
    return result


STREAMS: dict[str, tuple[list[StoredEvent], dict[str, Any]]] = {
    "two children interleaved": (TWO_CHILDREN, {}),
    "a grandchild, and calls named alike": (GRANDCHILD, {}),
    "a cancel with children open": (CANCELLED, {}),
    "a child's question": (ASKING, {}),
    "the answer's AG-UI run": (ASKING, {"quiet_until": 13, "answered": frozenset({"in_1"}), "continuing": True}),
    "a child's question answered while another streams": (ANSWERED_WHILE_STREAMING, {}),
    "a join from now, children streaming": (TWO_CHILDREN, {"quiet_until": 11, "continuing": True}),
    "a child taken over": (TAKEN_OVER, {}),
    "the thread's runs, one after the other": (THREAD, {"run_id": None}),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_the_client_s_verifier_takes_the_tree_s_stream(name: str, tmp_path: Path) -> None:
    events, options = STREAMS[name]
    rendered = stream(events, **options)
    result = verified(rendered, tmp_path)
    assert (result["error"], result["invalid"]) == (None, []), name
    assert result["verified"] == len(rendered)


def test_the_verifier_rejects_a_stream_whose_child_events_are_not_its_own(tmp_path: Path) -> None:
    """The judge judges: the same stream with one child's content tagged as the other's, or its
    subagent left open at the run's end, is refused."""
    rendered = stream(TWO_CHILDREN)
    content = next(i for i, e in enumerate(rendered) if e["type"] == "TEXT_MESSAGE_CONTENT" and "subagentRunId" in e)
    mistagged = [*rendered[:content], {**rendered[content], "subagentRunId": "r_childBBBBBB"}, *rendered[content + 1 :]]
    assert "does not match" in verified(mistagged, tmp_path)["error"]
    left_open = [e for e in rendered if not (e["type"] == "SUBAGENT_FINISHED")]
    assert "subagents are still active" in verified(left_open, tmp_path)["error"]


async def test_the_verifier_takes_the_stream_of_a_session_whose_children_a_worker_ran(
    start_gateway: Any, start_worker: Any, redis: Any, settings: Any, tmp_path: Path
) -> None:
    """Not a tree written by hand: a worker's, a parent spawning two children that stream side by side."""
    agents = {"parent": "tests.agents.spawning_agents:two_children", "echo": "tests.agents.spawning_agents:echo"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        made = (await client.post("/v1/sessions", json={"input": "hi", "agent": "parent"})).json()
        await read_events(client, made["events_url"])
    events = await SessionStore(redis, settings).read(made["session_id"], 0, 1000)
    assert sum(event.type == b"run.spawned" for event in events) == 2
    rendered = stream(events, run_id=made["run_id"])
    assert sum(event["type"] == "SUBAGENT_STARTED" for event in rendered) == 2
    result = await asyncio.to_thread(verified, rendered, tmp_path)
    assert (result["error"], result["invalid"]) == (None, [])
