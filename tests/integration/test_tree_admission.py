"""A tree of runs (docs/subagents.md) under its tenant's caps (shared/features/admission.py): its runs
wait in its tenant's line and count against its caps, so one tenant's fan-out slows only itself; and a
tree never waits on itself, at a cap of 1, whether its parents wait for their children without a worker
or follow them (`spawn_stream`) holding one."""

from collections.abc import Callable
from typing import Any

import httpx2
from redis.asyncio import Redis

from tests.integration.test_admission import AUTH, HELD
from tests.integration.test_auth import KEY_A, KEY_B, bearer
from tests.support.gates import Gates
from tests.support.waiting import eventually
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.vocabulary.records import child_run_id

AGENTS = {
    "agents": {
        "held": "tests.support.gates:held",
        "held_echo": "tests.agents.spawning_agents:held_echo",
        "echo": "tests.agents.spawning_agents:echo",
        "parent": "tests.agents.spawning_agents:two_children",
        "fan_out": "tests.agents.spawning_agents:fan_out",
        "fan_child": "tests.agents.spawning_agents:fan_child",
        "follows_a_parent": "tests.agents.spawning_agents:follows_a_parent",
    }
}


async def _stack(start_gateway: Callable[..., Any], start_worker: Callable[..., Any]) -> Any:
    """A gateway and a worker of 8 slots; every tenant capped at 1 run at once."""
    settings = {"max_active_runs_per_tenant": 1, **AUTH, **AGENTS}
    gateway = await start_gateway(**settings)
    await start_worker(worker_concurrency=8, **settings)
    return gateway


async def _post(http: httpx2.AsyncClient, key: str, agent: str) -> dict[str, Any]:
    response = await http.post("/v1/sessions", json={**HELD, "agent": agent}, headers=bearer(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _ended(http: httpx2.AsyncClient, key: str, session_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any]:
        state: dict[str, Any] = (await http.get(f"/v1/sessions/{session_id}", headers=bearer(key))).json()
        assert state["status"] == "idle", state["status"]
        return state

    return await eventually(done, within=60, what=f"session {session_id} done")


async def test_a_tenant_s_fan_out_at_its_cap_runs_one_run_at_a_time_and_another_tenant_starts_at_once(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates, redis: Redis, settings: Settings
) -> None:
    gateway = await _stack(start_gateway, start_worker)
    running = Keys(settings.key_prefix).tenant_running("acme")
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as http:
        tree = await _post(http, KEY_A, "fan_out")
        root = tree["run_id"]
        leaves = [child_run_id(child_run_id(root, f"c{i}"), f"c{j}") for i in range(4) for j in range(4)]
        await eventually(lambda: any(gates.reached(leaf) for leaf in leaves), what="a leaf of acme's tree at its gate")
        # Before the fix, its children skipped acme's line: 16 leaves held all 8 of the worker's slots.
        other = await _post(http, KEY_B, "held")
        await eventually(lambda: gates.reached(other["run_id"]), what="beta's run started beside acme's tree")
        assert sum(bool(gates.reached(leaf)) for leaf in leaves) == 1  # acme's cap: one of its runs at once
        assert await redis.hlen(running) == 1  # type: ignore[misc]
        gates.release_all()
        state = await _ended(http, KEY_A, tree["session_id"])
    runs = {run["run_id"]: run for run in state["runs"]}
    assert runs[root]["status"] == "completed" and len(runs) == 1 + 4 + 16
    expected = " ".join("+".join(f"half[{i}{j}] rest[{i}{j}]" for j in range(4)) for i in range(4))
    assert runs[root]["output"] == expected
    await eventually(lambda: _no_slot_held(redis, running), what="acme's slots all given back")


async def test_a_tree_at_a_cap_of_1_never_waits_on_itself_as_its_parents_follow_or_wait_for_children(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], redis: Redis, settings: Settings
) -> None:
    gateway = await _stack(start_gateway, start_worker)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as http:
        tree = await _post(http, KEY_A, "follows_a_parent")
        state = await _ended(http, KEY_A, tree["session_id"])
    root = state["runs"][0]
    assert root["status"] == "completed", root
    assert root["output"] == "followed <Asking two. Got echo[a] and echo[b].>, then echo[last]"
    running = Keys(settings.key_prefix).tenant_running("acme")
    await eventually(lambda: _no_slot_held(redis, running), what="acme's slots all given back")


async def _no_slot_held(redis: Redis, running: str) -> None:
    assert await redis.hlen(running) == 0  # type: ignore[misc]
