"""Child runs (docs/subagents.md) through a gateway and a worker: a run spawns runs of other agents in
its session, waits for them without a worker, and goes on with their answers."""

from typing import Any

import httpx2
import pytest

from tests.clients.sse_client import read_events
from tests.fixtures.stack import Gateway
from tokentail.shared.vocabulary.records import child_run_id

AGENTS = {
    "echo": "tests.agents.spawning_agents:echo",
    "failing": "tests.agents.spawning_agents:failing",
    "parent": "tests.agents.spawning_agents:two_children",
    "many": "tests.agents.spawning_agents:many_children",
    "careful_parent": "tests.agents.spawning_agents:handles_a_failure",
    "grandparent": "tests.agents.spawning_agents:grandparent",
}


@pytest.fixture
async def gateway(start_gateway: Any, start_worker: Any) -> Gateway:
    started: Gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS, max_concurrent_children=2, max_child_depth=2)
    return started


async def _run(gateway: Gateway, agent: str, text: str = "hi") -> tuple[dict[str, Any], Any, dict[str, Any]]:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        body = {"input": text, "agent": agent}
        made = (await client.post("/v1/sessions", json=body)).json()
        assert "events_url" in made, made
        received = await read_events(client, made["events_url"])
        state = (await client.get(f"/v1/sessions/{made['session_id']}")).json()
    return made, received, state


async def test_a_parent_spawns_two_children_that_stream_into_its_session_and_goes_on_with_both(
    gateway: Gateway,
) -> None:
    made, received, state = await _run(gateway, "parent")
    rid = made["run_id"]
    a, b = child_run_id(rid, "c_a"), child_run_id(rid, "c_b")
    assert received.ids == list(range(1, len(received.ids) + 1))  # one cursor space, no gap
    by_run: dict[str, list[str]] = {}
    for _, kind, data in received.events:
        by_run.setdefault(data["run_id"], []).append(kind)
    assert by_run[a] == ["run.spawned", "run.started", "message.delta", "run.completed"]
    assert by_run[b] == ["run.spawned", "run.started", "message.delta", "run.completed"]
    spawned = [data for _, kind, data in received.events if kind == "run.spawned"]
    assert spawned[0] == {
        "run_id": a, "parent_run_id": rid, "agent": "echo", "name": "echo", "input": "a",
        "cause": {"type": "tool_call", "call_id": "c_a"},
    }  # fmt: skip
    ends = {data["run_id"]: data for _, kind, data in received.events if kind == "run.completed"}
    assert ends[a]["parent_run_id"] == rid and "parent_run_id" not in ends[rid]
    assert ends[rid]["output"] == "Asking two. Got echo[a] and echo[b]."
    parent_kinds = by_run[rid]
    # It waited for them without a worker, and went on once both had ended.
    assert parent_kinds.count("run.started") == 2
    assert parent_kinds[-4:] == ["tool.completed", "tool.completed", "message.delta", "run.completed"]
    runs = {run["run_id"]: run for run in state["runs"]}
    assert runs[rid]["children"] == [a, b]
    assert runs[a]["parent_run_id"] == rid and runs[a]["status"] == "completed" and runs[a]["depth"] == 1
    # A child's work is its parent's tool call, not a turn of the conversation.
    assert [turn["run_id"] for turn in state["transcript"]] == [rid, rid]


async def test_children_past_those_that_may_go_at_once_wait_their_turn(gateway: Gateway) -> None:
    made, received, state = await _run(gateway, "many", "5")
    ended = [data for _, kind, data in received.events if kind == "run.completed"]
    assert ended[-1]["output"] == "echo[0] echo[1] echo[2] echo[3] echo[4]"
    going, most = 0, 0
    for _, kind, data in received.events:
        if data.get("parent_run_id") == made["run_id"]:
            going += {"run.spawned": 1, "run.completed": -1}.get(kind, 0)
            most = max(most, going)
    assert most == 2  # TOKENTAIL_MAX_CONCURRENT_CHILDREN


async def test_a_childs_failure_is_its_parents_to_handle(gateway: Gateway) -> None:
    made, received, state = await _run(gateway, "careful_parent")
    kinds = [(data["run_id"] == made["run_id"], kind) for _, kind, data in received.events]
    assert (False, "run.failed") in kinds
    assert state["runs"][0]["output"] == "The child failed (internal_error); I go on."
    failed = [data for _, kind, data in received.events if kind == "tool.failed"]
    assert len(failed) == 1 and failed[0]["run_id"] == made["run_id"]


async def test_a_child_may_spawn_children_of_its_own_down_to_the_depth_bound(gateway: Gateway) -> None:
    made, received, state = await _run(gateway, "grandparent")
    runs = {run["run_id"]: run for run in state["runs"]}
    child = child_run_id(made["run_id"], "spawn_0")
    grandchild = child_run_id(child, "c_a")
    assert (runs[child]["depth"], runs[grandchild]["depth"]) == (1, 2)
    assert runs[grandchild]["parent_run_id"] == child
    assert runs[made["run_id"]]["output"] == "top<Asking two. Got echo[a] and echo[b].>"
