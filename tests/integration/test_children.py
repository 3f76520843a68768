"""Child runs (docs/subagents.md) through a gateway and a worker: a run spawns runs of other agents in
its session, waits for them without a worker, and goes on with their answers."""

import logging
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis

from tests.clients.sse_client import read_events
from tests.fixtures.stack import Gateway
from tests.support.gates import Gates
from tests.support.waiting import eventually, scaled
from tokentail.shared.plumbing.logs import current_context
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.vocabulary.records import PUBLIC_TENANT, child_run_id

AGENTS = {
    "echo": "tests.agents.spawning_agents:echo",
    "failing": "tests.agents.spawning_agents:failing",
    "parent": "tests.agents.spawning_agents:two_children",
    "many": "tests.agents.spawning_agents:many_children",
    "careful_parent": "tests.agents.spawning_agents:handles_a_failure",
    "grandparent": "tests.agents.spawning_agents:grandparent",
    "held_echo": "tests.agents.spawning_agents:held_echo",
    "held_parent": "tests.agents.spawning_agents:two_held_children",
    "delegating": "tests.agents.spawning_agents:DELEGATING",
    "approve": "tests.agents.asking_agent:approval",
    "asking_parent": "tests.agents.spawning_agents:asks_a_child",
    "sequential": "tests.agents.spawning_agents:one_child_after_another",
    "stranger": "tests.agents.spawning_agents:spawns_a_stranger",
}
ENDS = {"run.completed", "run.failed", "run.cancelled"}


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


async def _children_at_their_gates(gates: Gates, client: httpx2.AsyncClient, sid: str, rid: str) -> list[str]:
    children = [child_run_id(rid, "c_a"), child_run_id(rid, "c_b")]
    await eventually(lambda: all(gates.reached(child) for child in children), within=scaled(20))

    async def waiting() -> None:
        state = (await client.get(f"/v1/sessions/{sid}")).json()
        parent = {run["run_id"]: run for run in state["runs"]}[rid]
        assert parent["status"] == "waiting" and parent["awaiting"] == children  # no worker holds it; spawned at once

    await eventually(waiting, within=scaled(20))
    return children


async def test_cancelling_the_parent_cancels_its_children_and_leaves_no_slot_or_lease(
    gateway: Gateway, gates: Gates, redis: Redis, settings: Settings
) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        made = (await client.post("/v1/sessions", json={"input": "hi", "agent": "held_parent"})).json()
        sid, rid = made["session_id"], made["run_id"]
        children = await _children_at_their_gates(gates, client, sid, rid)
        assert (await client.post(f"/v1/sessions/{sid}/cancel")).status_code == 202
        received = await read_events(client, made["events_url"])
    cancelled = {data["run_id"] for _, kind, data in received.events if kind == "run.cancelled"}
    assert cancelled == {rid, *children}
    await eventually(lambda: _nothing_left(redis, settings, sid, children), within=scaled(10))


async def test_cancelling_one_child_leaves_its_parent_and_sibling_to_go_on(gateway: Gateway, gates: Gates) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        made = (await client.post("/v1/sessions", json={"input": "hi", "agent": "held_parent"})).json()
        sid, rid = made["session_id"], made["run_id"]
        a, b = await _children_at_their_gates(gates, client, sid, rid)
        assert (await client.post(f"/v1/sessions/{sid}/cancel", json={"run_id": a})).status_code == 202
        gates.release(b)
        received = await read_events(client, made["events_url"])
    ends = {data["run_id"]: kind for _, kind, data in received.events if kind.startswith("run.") and kind in ENDS}
    assert ends == {a: "run.cancelled", b: "run.completed", rid: "run.failed"}  # it did not catch ChildFailed
    assert received.events[-1][2]["error"]["type"] == "child_failed"
    failed = [data for _, kind, data in received.events if kind == "tool.failed"]
    assert [data["call_id"] for data in failed] == ["c_a"]


async def test_deleting_the_session_ends_its_children_and_leaves_none_of_their_keys(
    gateway: Gateway, gates: Gates, redis: Redis, settings: Settings
) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        made = (await client.post("/v1/sessions", json={"input": "hi", "agent": "held_parent"})).json()
        sid, rid = made["session_id"], made["run_id"]
        children = await _children_at_their_gates(gates, client, sid, rid)
        assert (await client.delete(f"/v1/sessions/{sid}")).status_code in (200, 204)
        gates.release_all()
    await eventually(lambda: _nothing_left(redis, settings, sid, children, lanes=False), within=scaled(15))


async def _nothing_left(redis: Redis, settings: Settings, sid: str, children: list[str], lanes: bool = True) -> None:
    """No slot, lease or leases-index entry of the children is left (with `lanes` False, no key of their lanes)."""
    keys = Keys(settings.key_prefix)
    assert await redis.hlen(keys.tenant_running(PUBLIC_TENANT)) == 0  # type: ignore[misc]
    for child in children:
        assert not await redis.exists(keys.session(f"{sid}/{child}").lease)
        assert await redis.zscore(keys.lease_checks, f"{sid}/{child}") is None
    if not lanes:
        assert [key async for key in redis.scan_iter(match=f"{settings.key_prefix}:{{{sid}}}:run:*")] == []


async def test_the_built_in_agent_calls_a_catalog_agent_as_a_tool_and_answers_with_its_result(gateway: Gateway) -> None:
    made, received, state = await _run(gateway, "delegating", "Ask the echo agent about tides")
    asked = "Ask the echo agent about tides"
    rid = made["run_id"]
    started = [data for _, kind, data in received.events if kind == "tool.started"]
    assert [(data["run_id"], data["name"]) for data in started] == [(rid, "echo")]
    child = child_run_id(rid, started[0]["call_id"])
    spawned = [data for _, kind, data in received.events if kind == "run.spawned"]
    assert spawned == [
        {"run_id": child, "parent_run_id": rid, "agent": "echo", "name": "echo", "input": asked,
         "cause": {"type": "tool_call", "call_id": started[0]["call_id"]}}
    ]  # fmt: skip
    completed = [data for _, kind, data in received.events if kind == "tool.completed"]
    assert [(data["call_id"], data["result"]) for data in completed] == [(started[0]["call_id"], f"echo[{asked}]")]
    runs = {run["run_id"]: run for run in state["runs"]}
    assert runs[rid]["status"] == "completed" and f"echo[{asked}]" in runs[rid]["output"]


async def test_the_built_in_team_agent_asks_the_assistant_offline(gateway: Gateway) -> None:
    made, received, state = await _run(gateway, "team", "Ask the assistant what is 12 * 7")
    runs = {run["run_id"]: run for run in state["runs"]}
    (child,) = runs[made["run_id"]]["children"]
    assert runs[child]["agent"] == "assistant" and "84" in runs[child]["output"]
    child_tools = [
        data["name"] for _, kind, data in received.events if kind == "tool.started" and data["run_id"] == child
    ]
    assert child_tools == ["calculator"]  # the child is a run of the assistant, with its own tools
    assert "84" in runs[made["run_id"]]["output"]


async def test_spawns_past_the_depth_and_the_children_of_a_run_are_refused_to_the_agent(
    start_gateway: Any, start_worker: Any
) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS, max_child_depth=1, max_children_per_run=1)
    made, received, state = await _run(gateway, "grandparent")
    runs = {run["run_id"]: run for run in state["runs"]}
    child = child_run_id(made["run_id"], "spawn_0")
    failed = {data["call_id"]: data["error"] for _, kind, data in received.events if kind == "tool.failed"}
    assert "TOKENTAIL_MAX_CHILD_DEPTH" in failed["c_a"]  # the child's own spawn, a level too deep
    assert runs[child]["status"] == "failed" and runs[made["run_id"]]["status"] == "failed"
    made, received, state = await _run(gateway, "sequential", "2")
    failed = {data["call_id"]: data["error"] for _, kind, data in received.events if kind == "tool.failed"}
    assert list(failed) == ["spawn_1"] and "TOKENTAIL_MAX_CHILDREN_PER_RUN" in failed["spawn_1"]
    assert len(state["runs"][0]["children"]) == 1


async def test_a_childs_question_is_answered_as_any_and_the_child_then_its_parent_go_on(gateway: Gateway) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        made = (await client.post("/v1/sessions", json={"input": "hi", "agent": "asking_parent"})).json()
        sid, rid = made["session_id"], made["run_id"]
        child = child_run_id(rid, "c_q")

        async def asked() -> dict[str, Any]:
            runs = {run["run_id"]: run for run in (await client.get(f"/v1/sessions/{sid}")).json()["runs"]}
            assert child in runs and runs[child]["status"] == "waiting" and runs[rid]["status"] == "waiting"
            question: dict[str, Any] = runs[child]["asked"][0]
            return question

        question = await eventually(asked, within=scaled(20))
        answer = {"input_id": question["input_id"], "answer": {"approved": True}}
        answered = await client.post(f"/v1/sessions/{sid}/runs/{child}/input", json=answer)
        assert answered.status_code == 202, answered.text
        received = await read_events(client, made["events_url"])
    kinds = [(data["run_id"] == child, kind) for _, kind, data in received.events]
    assert (True, "input.required") in kinds and (True, "input.received") in kinds
    assert received.events[-1][2]["output"] == "The child said: Checking. Done: deleted."


async def test_the_per_minute_bound_counts_each_child_once_as_it_starts_not_the_spawns_that_waited_for_room(
    start_gateway: Any, start_worker: Any
) -> None:
    # 8 spawns at once, 2 of them going at a time: the 6 others wait for room, and are made again each
    # time the parent goes on; before the fix each such try counted, and the 5th child was refused.
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS, max_concurrent_children=2, children_per_tenant_per_minute=10)
    made, received, state = await _run(gateway, "many", "8")
    assert [kind for _, kind, _ in received.events if kind == "tool.failed"] == []
    assert state["runs"][0]["output"] == " ".join(f"echo[{i}]" for i in range(8))
    assert len(state["runs"][0]["children"]) == 8


async def test_a_spawn_of_an_agent_no_catalog_has_is_refused_as_it_is_made(gateway: Gateway) -> None:
    # Before the fix the spawn was accepted, and its child failed "unknown agent" once a worker took it.
    made, received, state = await _run(gateway, "stranger")
    assert [kind for _, kind, _ in received.events if kind == "run.spawned"] == []
    failed = [data for _, kind, data in received.events if kind == "tool.failed"]
    assert len(failed) == 1 and "unknown agent 'researcher'" in failed[0]["error"]
    assert state["runs"][0]["children"] == []
    assert state["runs"][0]["output"] == "refused: unknown_agent (422)"


class _LogContexts(logging.Handler):
    """Each record's message, and the log context it was logged in (a job's fields: `bind`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, dict[str, str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), current_context()))


async def test_a_childs_logs_name_its_session_and_its_run_apart(gateway: Gateway) -> None:
    # Before the fix, a child's job logged its lane (`s_…/r_…`) where its session id belongs.
    logs = _LogContexts()
    job_logger = logging.getLogger("tokentail.worker.run.job")
    level, job_logger.level = job_logger.level, logging.INFO
    job_logger.addHandler(logs)
    try:
        made, _, _ = await _run(gateway, "parent")
    finally:
        job_logger.removeHandler(logs)
        job_logger.level = level
    sid, child = made["session_id"], child_run_id(made["run_id"], "c_a")
    started = [(text, fields) for text, fields in logs.seen if text.startswith(f"run {child} of session")]
    assert started and all(f" of session {sid} " in text for text, _ in started)
    assert {fields["session_id"] for _, fields in started} == {sid}
    assert {fields["run_id"] for _, fields in started} == {child}
    assert not [text for text, _ in logs.seen if f"{sid}/" in text]


async def test_a_parents_started_at_stays_its_first_start_after_it_goes_on_with_its_childrens_results(
    gateway: Gateway,
) -> None:
    # Before the fix, its resume after its children wrote its `started_at` again.
    made, _, state = await _run(gateway, "parent")
    sid, rid = made["session_id"], made["run_id"]
    runs = {run["run_id"]: run for run in state["runs"]}
    child = runs[child_run_id(rid, "c_a")]
    assert runs[rid]["started_at"] <= child["queued_at"] <= child["finished_at"] <= runs[rid]["finished_at"]
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        record = (await client.get(f"/v1/sessions/{sid}/runs/{rid}")).json()
    assert record["started_at"] == runs[rid]["started_at"]
