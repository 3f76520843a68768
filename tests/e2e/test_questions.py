"""A question, and a webhook, that outlive their client, gateway and worker: real processes."""

import asyncio
import json
import time

import httpx2
import pytest

from tests.clients.sse_client import read_events
from tests.e2e.conftest import Stack
from tests.servers.webhook_receiver import Receiver
from tests.support.sessions import waiting_for_input
from tests.support.waiting import eventually

AGENTS = '{"approve": "tests.agents.asking_agent:approval", "parallel": "tests.agents.asking_agent:parallel_approvals"}'


async def test_a_pending_question_survives_a_killed_worker_and_is_answered_from_another_client(stack: Stack) -> None:
    stack.env |= {"TOKENTAIL_AGENTS": AGENTS, "TOKENTAIL_LEASE_MS": "1500"}
    first_gateway, second_gateway = stack.gateway(), stack.gateway()
    asker = stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx2.AsyncClient(timeout=30) as client:
        made = (
            await client.post(f"{first_gateway}/v1/sessions", json={"input": "clean up", "agent": "approve"})
        ).json()
        sid, rid = made["session_id"], made["run_id"]

        question = (await waiting_for_input(client, f"{first_gateway}/v1/sessions/{sid}"))["pending_input"]
        # The first client goes away; the worker that asked is killed while the run waits.
        asker.kill()
        asker.wait()
        answerer = stack.worker()
        await asyncio.to_thread(stack.wait_for_workers, 1)
        await asyncio.sleep(2)  # a lease and more: a run that held one would have been taken over by now
        # A second client, on the other gateway, finds the question pending (in the state and the stream).
        state = (await client.get(f"{second_gateway}/v1/sessions/{sid}")).json()
        assert state["status"] == "waiting_for_input" and state["pending_input"] == question
        answer = {"input_id": question["input_id"], "answer": {"approved": True}}
        assert (
            await client.post(f"{second_gateway}/v1/sessions/{sid}/runs/{rid}/input", json=answer)
        ).status_code == 202
        received = await read_events(client, f"{second_gateway}/v1/sessions/{sid}/events")
        assert answerer.poll() is None
    kinds = [kind for _, kind, _ in received.events]
    assert kinds == [
        "run.queued", "run.started", "message.delta", "tool.started", "input.required",
        "input.received", "run.started", "tool.completed", "message.delta", "run.completed",
    ]  # fmt: skip
    assert "run.retrying" not in kinds, "a waiting run holds no worker: nothing to take over"
    assert received.ids == list(range(1, len(kinds) + 1))
    assert received.events[-1][2]["output"] == "Checking. Done: deleted."


@pytest.mark.parametrize("first", ["logs", "cache"])
async def test_two_questions_open_at_once_are_answered_in_either_order_from_two_gateways_through_a_worker_kill(
    stack: Stack, first: str
) -> None:
    stack.env |= {"TOKENTAIL_AGENTS": AGENTS, "TOKENTAIL_LEASE_MS": "1500"}
    gateways = stack.gateway(), stack.gateway()
    asker = stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx2.AsyncClient(timeout=30) as client:
        body = {"input": "clean up", "agent": "parallel"}
        made = (await client.post(f"{gateways[0]}/v1/sessions", json=body)).json()
        sid, rid = made["session_id"], made["run_id"]
        state = await waiting_for_input(client, f"{gateways[0]}/v1/sessions/{sid}")
        asked = {q["prompt"]: q for q in state["pending_inputs"]}
        assert sorted(asked) == ["Delete cache?", "Delete logs?"] and state["pending_input"] in asked.values()
        asker.kill()  # the worker that asked is killed while the run waits
        asker.wait()
        answerer = stack.worker()
        order = [first, "cache" if first == "logs" else "logs"]
        for gateway, what in zip(gateways[::-1], order, strict=True):  # one answer from each gateway
            question = asked[f"Delete {what}?"]
            answer = {"input_id": question["input_id"], "answer": {"approved": what == "logs"}}
            assert (await client.post(f"{gateway}/v1/sessions/{sid}/runs/{rid}/input", json=answer)).status_code == 202
            if what == first:  # the run still waits, for the other one only
                state = (await client.get(f"{gateways[0]}/v1/sessions/{sid}")).json()
                assert state["status"] == "waiting_for_input"
                assert [q["prompt"] for q in state["pending_inputs"]] == [f"Delete {order[1]}?"]
        received = await read_events(client, f"{gateways[0]}/v1/sessions/{sid}/events")
        assert answerer.poll() is None
    kinds = [kind for _, kind, _ in received.events]
    assert kinds == [
        "run.queued", "run.started", "message.delta", "tool.started", "tool.started", "input.required",
        "input.required", "input.received", "input.received", "run.started", "tool.completed", "tool.completed",
        "message.delta", "run.completed",
    ]  # fmt: skip
    assert received.ids == list(range(1, len(kinds) + 1))  # nothing twice, nothing missing
    assert received.events[-1][2]["output"] == "Checking. logs deleted, cache kept."


async def test_a_worker_killed_mid_delivery_leaves_its_webhook_to_another_worker(stack: Stack) -> None:
    # The first post of the run's webhook is never answered: its worker is killed -9 while it waits.
    async with Receiver(stall_first=True) as receiver:
        stack.env |= {"TOKENTAIL_WEBHOOK_ALLOWED_URLS": receiver.url, "TOKENTAIL_WEBHOOK_TIMEOUT_SECONDS": "2"}
        gateway = stack.gateway()
        poster = stack.worker()
        await asyncio.to_thread(stack.wait_for_workers, 1)
        async with httpx2.AsyncClient(base_url=gateway, timeout=30) as client:
            body = {"input": "hi", "params": {"tokens": 3}, "webhook": receiver.url + "/hook"}
            made = (await client.post("/v1/sessions", json=body)).json()
            await eventually(lambda: len(receiver.deliveries) == 1, within=20, what="the first post, in flight")
            poster.kill()
            struck = time.monotonic()
            poster.wait()
            stack.worker()
            await eventually(lambda: len(receiver.accepted()) == 1, within=30, what="the webhook delivered again")
            redelivered = time.monotonic() - struck
            received = await read_events(client, made["events_url"])
            await asyncio.sleep(1)
    first, again = receiver.deliveries[0], receiver.accepted()[0]
    assert len(receiver.deliveries) == 2
    assert first.webhook_id == again.webhook_id == f"{made['session_id']}.{received.ids[-1]}"
    assert first.body == again.body and json.loads(again.body)["type"] == "run.completed"
    print(f"\nwebhook posted again {redelivered:.1f} s after its deliverer was killed (claim: 12 s)")  # noqa: T201
