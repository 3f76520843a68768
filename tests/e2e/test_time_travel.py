"""A fork's run taken over: a worker killed -9 while the run a fork holds goes on from an event of it,
with real gateway and worker processes. The built-in loop on the scripted model with a calculator that
counts its runs by call id and waits at its call's gate (tests/agents/forking_agents.py): the tool
result the fork replays is never run again, by the fork nor by its takeover."""

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
from redis.asyncio import Redis

from tests.e2e.conftest import Stack
from tests.support.waiting import eventually
from tokentail.shared.store.keys import Keys

AGENTS = json.dumps({"gated": "tests.agents.forking_agents:GATED"})
TWO_CALLS = "What is 12 * 7 and 6 * 7?"  # the scripted model calls the calculator twice, in one turn


async def test_a_worker_killed_during_a_fork_s_run_is_taken_over_and_runs_no_recorded_tool_again(
    stack: Stack, tmp_path: Path
) -> None:
    tool_runs = tmp_path / "tool-runs"
    tool_runs.touch()
    stack.env |= {"TOKENTAIL_AGENTS": AGENTS, "TOKENTAIL_TEST_TOOL_RUNS": str(tool_runs), "TOKENTAIL_LEASE_MS": "2000"}

    def runs() -> Counter[str]:
        return Counter(tool_runs.read_text().split())

    url = stack.gateway()
    doomed = stack.worker()
    keys = Keys(stack.env["TOKENTAIL_KEY_PREFIX"])
    async with httpx2.AsyncClient(base_url=url, timeout=30) as http, Redis.from_url(stack.redis.url) as redis:

        async def events(session_id: str) -> list[tuple[int, str, dict[str, Any]]]:
            """The session's events, as its stream in Redis holds them."""
            entries = await redis.xrange(keys.session(session_id).events)
            return [(int(i.split(b"-")[0]), f[b"type"].decode(), json.loads(f[b"data"])) for i, f in entries]

        source = (await http.post("/v1/sessions", json={"agent": "gated", "input": TWO_CALLS})).json()["session_id"]

        async def calls() -> list[str]:
            started = [data["call_id"] for _, kind, data in await events(source) if kind == "tool.started"]
            assert len(started) == 2
            return started

        first, second = await eventually(calls, within=60, what="the two calls started")
        await eventually(lambda: runs() == {first: 1, second: 1}, within=60, what="both calls at their gates")
        stack.gates.release(first)

        async def first_result() -> int:
            done = [seq for seq, kind, data in await events(source) if kind == "tool.completed"]
            assert done, "no result yet"
            return done[0]

        at = await eventually(first_result, within=60, what="the first call's result")
        forked = await http.post(f"/v1/sessions/{source}/fork", json={"at": at})
        assert forked.status_code == 201, forked.text
        fork = forked.json()["session_id"]
        # The fork's run runs the second call again (no result by `at`), and waits at its gate: the kill.
        await eventually(lambda: runs()[second] == 2, within=60, what="the second call run in the fork")
        stack.worker()
        doomed.kill()
        doomed.wait()
        # Both runs are taken over; the second call, cut mid-call in each, runs again in each.
        await eventually(lambda: runs()[second] == 4, within=60, what="the second call run again after the kill")
        stack.gates.release(second)

        async def ended(session_id: str) -> dict[str, Any]:
            state: dict[str, Any] = (await http.get(f"/v1/sessions/{session_id}")).json()
            assert state["status"] == "idle", state["status"]
            return state

        source_state = await eventually(lambda: ended(source), within=60)
        fork_state = await eventually(lambda: ended(fork), within=60)
        fork_events = await events(fork)

    assert runs() == {first: 1, second: 4}  # the first call's recorded result was never run again
    assert source_state["runs"][0]["status"] == fork_state["runs"][0]["status"] == "completed"
    assert fork_state["runs"][0]["output"] == source_state["runs"][0]["output"]
    kinds = [(kind, data.get("call_id"), data.get("reason")) for _, kind, data in fork_events]
    assert kinds.count(("tool.completed", first, None)) == 1  # the copy's, shown once
    assert ("run.started", None, "fork") in kinds and ("run.continued", None, None) in kinds
