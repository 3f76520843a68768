"""Child runs (docs/subagents.md) through killed workers: real processes, a worker killed -9 while it
runs a child mid-answer, or while it holds a parent that follows its child."""

import asyncio
from collections import Counter
from typing import Any

import httpx2

from tests.clients.sse_client import read_events
from tests.e2e.conftest import Stack
from tests.support.waiting import eventually, scaled
from tokentail.shared.vocabulary.records import child_run_id

AGENTS = (
    '{"parent": "tests.agents.spawning_agents:two_held_children",'
    ' "held_echo": "tests.agents.spawning_agents:held_echo",'
    ' "follower": "tests.agents.spawning_agents:following_parent"}'
)


def _of(received: Any, run_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    return [(seq, kind, data) for seq, kind, data in received.events if data["run_id"] == run_id]


def _text(events: list[tuple[int, str, dict[str, Any]]]) -> str:
    """A run's answer as a client keeps it: its deltas, less those a `run.continued` dropped."""
    kept: list[tuple[int, str]] = []
    for seq, kind, data in events:
        if kind == "message.delta":
            kept.append((seq, data["text"]))
        elif kind == "run.continued":
            kept = [(at, text) for at, text in kept if at <= data["from_event_id"]]
    return "".join(text for _, text in kept)


async def test_a_worker_killed_mid_child_leaves_that_child_to_go_on_and_its_parent_ends_with_both(
    stack: Stack,
) -> None:
    stack.env |= {"TOKENTAIL_AGENTS": AGENTS, "TOKENTAIL_LEASE_MS": "1500"}
    gateway = stack.gateway()
    first = stack.worker(TOKENTAIL_WORKER_CONCURRENCY="1")  # the parent, then one child: the other waits
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx2.AsyncClient(base_url=gateway, timeout=60) as client:
        made = (await client.post("/v1/sessions", json={"input": "hi", "agent": "parent"})).json()
        rid = made["run_id"]
        children = [child_run_id(rid, "c_a"), child_run_id(rid, "c_b")]
        await eventually(lambda: any(stack.gates.reached(child) for child in children), within=scaled(20))
        on_first = next(child for child in children if stack.gates.reached(child))
        other = next(child for child in children if child != on_first)
        stack.worker()  # takes the other child now, and the killed one's later
        await eventually(lambda: stack.gates.reached(other), within=scaled(20))
        first.kill()  # mid-answer: it streamed half, and waits at its gate
        first.wait()
        await eventually(lambda: stack.gates.reached(on_first) == [1, 2], within=scaled(20))  # taken over
        for child in children:
            stack.gates.release(child)
        received = await read_events(client, made["events_url"])
    assert received.ids == list(range(1, len(received.ids) + 1))  # no gap, no id twice
    killed = _of(received, on_first)
    assert [kind for _, kind, _ in killed if kind.startswith("run.")] == [
        "run.spawned", "run.started", "run.continued", "run.completed"
    ]  # fmt: skip
    assert (
        _text(killed)
        == f"half[{'a' if on_first == children[0] else 'b'}] rest[{'a' if on_first == children[0] else 'b'}]"
    )
    parent = _of(received, rid)
    kinds = Counter(kind for _, kind, _ in received.events)
    assert kinds["run.spawned"] == 2  # never spawned again
    assert [kind for _, kind, _ in parent if kind == "tool.started"] == ["tool.started"] * 2
    assert parent[-1][2]["output"] == "Asking two. Got half[a] rest[a] and half[b] rest[b]."


async def test_a_worker_killed_while_its_parent_follows_a_child_leaves_the_takeover_to_follow_the_same_child(
    stack: Stack,
) -> None:
    stack.env |= {"TOKENTAIL_AGENTS": AGENTS, "TOKENTAIL_LEASE_MS": "1500"}
    gateway = stack.gateway()
    first = stack.worker(TOKENTAIL_WORKER_CONCURRENCY="1")  # the parent holds its one slot while it follows
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx2.AsyncClient(base_url=gateway, timeout=60) as client:
        made = (await client.post("/v1/sessions", json={"input": "hi", "agent": "follower"})).json()
        rid = made["run_id"]
        child = child_run_id(rid, "c_f")

        async def spawned() -> None:
            state = (await client.get(f"/v1/sessions/{made['session_id']}")).json()
            assert child in {run["run_id"] for run in state["runs"]}

        await eventually(spawned, within=scaled(20))
        stack.worker()  # runs the child (the first is full), and takes the parent over
        await eventually(lambda: stack.gates.reached(child), within=scaled(20))
        first.kill()  # the parent's worker, while the parent follows its child
        first.wait()

        async def taken_over() -> None:
            state = (await client.get(f"/v1/sessions/{made['session_id']}")).json()
            assert {run["run_id"]: run["attempt"] for run in state["runs"]}[rid] == 2

        await eventually(taken_over, within=scaled(20))
        stack.gates.release(child)
        received = await read_events(client, made["events_url"])
    assert received.ids == list(range(1, len(received.ids) + 1))
    assert Counter(kind for _, kind, _ in received.events)["run.spawned"] == 1  # re-attached, not spawned again
    assert [kind for _, kind, _ in _of(received, child) if kind.startswith("run.")] == [
        "run.spawned", "run.started", "run.completed"
    ]  # fmt: skip
    assert _of(received, rid)[-1][2]["output"] == "followed: half[f] rest[f]"
