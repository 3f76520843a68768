"""One sub-agent run followed alone (`?run=<child>&subtree=1`) through a gateway killed mid-answer:
the client resumes on another gateway with its last id, with no gap and no duplicate."""

import asyncio
import json
import signal
from typing import Any

import httpx2

from tests.clients.sse_client import read_events
from tests.e2e.conftest import Stack
from tests.support.waiting import eventually, scaled
from tokentail.shared.vocabulary.records import child_run_id

AGENTS = {
    "held_echo": "tests.agents.spawning_agents:held_echo",
    "held_parent": "tests.agents.spawning_agents:two_held_children",
}


async def test_a_child_followed_alone_resumes_on_another_gateway_after_a_kill(stack: Stack) -> None:
    stack.env["TOKENTAIL_AGENTS"] = json.dumps(AGENTS)
    first, second = stack.gateway(), stack.gateway()
    stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with (
        httpx2.AsyncClient(base_url=first, timeout=scaled(10)) as a,
        httpx2.AsyncClient(base_url=second, timeout=scaled(10)) as b,
    ):
        made = (await a.post("/v1/sessions", json={"input": "hi", "agent": "held_parent"})).json()
        sid, rid = made["session_id"], made["run_id"]
        child, sibling = child_run_id(rid, "c_a"), child_run_id(rid, "c_b")
        await eventually(lambda: stack.gates.reached(child), within=scaled(30))  # spawned, half its answer out
        url = f"/v1/sessions/{sid}/events?run={child}&subtree=1"
        seen: list[tuple[int | None, str, dict[str, Any]]] = []
        reader = asyncio.create_task(read_events(a, url, on_event=seen.append))
        # The reader has the child's first half: the gateway dies under it.
        await eventually(lambda: any(event == "message.delta" for _, event, _ in seen), within=scaled(30))
        stack.gateways[first].send_signal(signal.SIGKILL)
        await asyncio.gather(reader, return_exceptions=True)  # cut: a transport error
        stack.gates.release(child)
        rest = await read_events(b, url, last_event_id=seen[-1][0])
        stack.gates.release(sibling)
        whole = await read_events(b, f"/v1/sessions/{sid}/events")
    expected = [event for event in whole.events if event[2]["run_id"] == child]
    assert seen + rest.events == expected  # no gap, no duplicate, nothing of the others
    assert [event for _, event, _ in expected] == [
        "run.spawned", "run.started", "message.delta", "message.delta", "run.completed"
    ]  # fmt: skip
