"""Steering through the gateway and a worker in this process (docs/steering.md): a steer taken in
once by an agent of your own, one its agent never takes, one after its run ended, a follow-up that
steers, and the bounds."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
import websockets

from tests.clients.sse_client import read_events
from tests.support.gates import Gates
from tests.support.waiting import eventually, scaled
from tokentail import ApiError, AsyncTokentail, Tokentail

AGENTS = {
    "listening": "tests.agents.steering_agent:listening",
    "deaf": "tests.agents.steering_agent:deaf",
    "remembering": "tests.agents.steering_agent:remembering",
}


async def _held_run(client: httpx2.AsyncClient, gates: Gates, agent: str, **body: str) -> dict[str, Any]:
    """A session whose run waits at its agent's gate (`body`: more of the session's fields, a chat id)."""
    created = (await client.post("/v1/sessions", json={"input": "go", "agent": agent, **body})).json()
    await eventually(lambda: gates.reached(created["run_id"]) == [1], what="the run at its gate")
    return dict(created)


async def test_an_agent_takes_a_steer_in_once_and_the_stream_says_when(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        created = await _held_run(client, gates, "listening")
        sid, rid = created["session_id"], created["run_id"]
        steered = await client.post(f"/v1/sessions/{sid}/steer", json={"input": "be brief", "run_id": rid})
        assert steered.status_code == 202, steered.text
        accepted = steered.json()
        assert accepted["run_id"] == rid and accepted["status"] == "accepted" and accepted["steer_id"].startswith("st_")
        gates.release(rid)
        received = await read_events(client, created["events_url"])
    kinds = [kind for _, kind, _ in received.events]
    assert kinds == [
        "run.queued", "run.started", "message.delta", "steer.accepted", "steer.applied", "message.delta",
        "run.completed",
    ]  # fmt: skip
    steer_id = accepted["steer_id"]
    assert received.events[3][2] == {"run_id": rid, "steer_id": steer_id, "input": "be brief"}
    assert received.events[4][2] == {"run_id": rid, "steer_id": steer_id}
    assert received.events[-1][2]["output"] == "Working. Taken in: be brief."


async def test_a_later_run_s_agent_is_told_the_steers_an_earlier_run_took_in(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    # The texts of steers taken in are kept apart from their run's record (lib/steers.lua): the next
    # run's history, the session's transcript and its fork still have them.
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        created = await _held_run(client, gates, "remembering")
        sid, rid = created["session_id"], created["run_id"]
        steered = await client.post(f"/v1/sessions/{sid}/steer", json={"input": "be brief", "run_id": rid})
        assert steered.status_code == 202, steered.text
        gates.release(rid)
        await read_events(client, created["events_url"])
        later = (await client.post(f"/v1/sessions/{sid}/runs", json={"input": "again"})).json()
        received = await read_events(client, created["events_url"], last_event_id=0)
        assert received.events[-1][2]["output"] == "I was told: go | be brief", received.events[-1]
        state = (await client.get(f"/v1/sessions/{sid}")).json()
        users = [turn["content"] for turn in state["transcript"] if turn["role"] == "user"]
        assert users == ["go", "be brief", "again"] and later["run_id"] == received.events[-1][2]["run_id"]


async def test_an_agent_that_takes_no_steers_fails_them_and_an_ended_run_takes_none(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        created = await _held_run(client, gates, "deaf")
        sid, rid = created["session_id"], created["run_id"]
        steer_id = (await client.post(f"/v1/sessions/{sid}/steer", json={"input": "stop"})).json()["steer_id"]
        gates.release(rid)
        received = await read_events(client, created["events_url"])
        assert [kind for _, kind, _ in received.events][-2:] == ["steer.failed", "run.completed"]
        assert received.events[-2][2] == {"run_id": rid, "steer_id": steer_id, "reason": "not_supported"}
        late = await client.post(f"/v1/sessions/{sid}/steer", json={"input": "too late"})
        assert late.status_code == 409 and late.json()["error"]["type"] == "run_not_active"
        named = await client.post(f"/v1/sessions/{sid}/steer", json={"input": "x", "run_id": rid})
        assert named.status_code == 409 and rid in named.json()["error"]["message"]
        after = await read_events(client, created["events_url"], last_event_id=received.ids[-1])
        assert after.status == 204  # nothing was written for them


async def test_a_follow_up_that_steers_queues_no_second_run_and_too_many_steers_wait(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        created = await _held_run(client, gates, "listening")
        sid, rid = created["session_id"], created["run_id"]
        follow_up = await client.post(f"/v1/sessions/{sid}/runs", json={"input": "in French", "multitask": "steer"})
        assert follow_up.status_code == 202 and follow_up.json()["run_id"] == rid
        assert follow_up.json()["status"] == "steered" and follow_up.json()["steer_id"].startswith("st_")
        for n in range(7):
            assert (await client.post(f"/v1/sessions/{sid}/steer", json={"input": f"more {n}"})).status_code == 202
        refused = await client.post(f"/v1/sessions/{sid}/steer", json={"input": "one too many"})
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_pending_steers"
        assert int(refused.headers["retry-after"]) > 0
        too_long = await client.post(f"/v1/sessions/{sid}/steer", json={"input": "x" * 2_000_000})
        assert too_long.status_code == 413
        gates.release(rid)
        received = await read_events(client, created["events_url"])
        state = (await client.get(f"/v1/sessions/{sid}")).json()
    assert [run["run_id"] for run in state["runs"]] == [rid]
    output = received.events[-1][2]["output"]
    assert output.startswith("Working. Taken in: in French. Taken in: more 0.") and output.endswith("more 6.")
    assert [kind for _, kind, _ in received.events].count("steer.applied") == 8
    accepted = [data for _, kind, data in received.events if kind == "steer.accepted"]
    assert accepted[0]["steer_id"] == follow_up.json()["steer_id"], "the steer the answer named"


async def test_the_python_clients_steer_once_and_say_when_no_run_is_active(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    async with AsyncTokentail(gateway.url) as client, httpx2.AsyncClient(base_url=gateway.url, timeout=30) as http:
        created = await _held_run(http, gates, "listening")
        sid, rid = created["session_id"], created["run_id"]
        accepted = await client.steer(sid, "from async", run_id=rid)
        assert accepted["run_id"] == rid and accepted["status"] == "accepted"
        with Tokentail(gateway.url) as blocking:
            assert (await asyncio.to_thread(blocking.steer, sid, "from blocking"))["run_id"] == rid
            gates.release(rid)
            events = [event async for event in client.stream(sid)]
            assert events[-1].data["output"] == "Working. Taken in: from async. Taken in: from blocking."
            with pytest.raises(ApiError) as refused:
                await asyncio.to_thread(blocking.steer, sid, "too late")
        assert (refused.value.status, refused.value.type) == (409, "run_not_active")


async def test_the_session_socket_steers_and_refuses_as_rest_does(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as http:
        created = await _held_run(http, gates, "listening")
    sid, rid = created["session_id"], created["run_id"]
    messages: list[dict[str, Any]] = []

    async def until(done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), scaled(10))))
            if done(messages[-1]):
                return messages[-1]

    async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/v1/sessions/{sid}/ws") as ws:
        await ws.send(json.dumps({"type": "steer", "input": "over the socket", "run_id": rid}))
        ack = await until(lambda m: m.get("type") == "ack")
        assert ack["request"] == "steer" and ack["run_id"] == rid and ack["status"] == "accepted"
        gates.release(rid)
        completed = await until(lambda m: m.get("event") == "run.completed")
        assert completed["data"]["output"] == "Working. Taken in: over the socket."
        await ws.send(json.dumps({"type": "steer", "input": "too late"}))
        refused = await until(lambda m: m.get("type") == "error")
    assert refused["error"]["type"] == "run_not_active"
    assert [m["event"] for m in messages if "event" in m].count("steer.applied") == 1


@pytest.mark.ai_sdk
@pytest.mark.ag_ui
async def test_the_chat_protocols_show_a_steer_as_they_can(start_gateway: Any, start_worker: Any, gates: Gates) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        created = await _held_run(client, gates, "listening", chat_id="steered-chat")
        sid, rid = created["session_id"], created["run_id"]
        steer_id = (await client.post(f"/v1/sessions/{sid}/steer", json={"input": "be brief"})).json()["steer_id"]
        gates.release(rid)
        await read_events(client, created["events_url"])  # to its end
        # The AI SDK: one data part per steer, its status replaced in place by its id.
        ai_sdk = await client.get("/v1/ai-sdk/chat/steered-chat/stream")
        parts = [json.loads(line[6:]) for line in ai_sdk.text.splitlines() if line.startswith("data: {")]
        steers = [part for part in parts if part["type"] == "data-steer"]
        assert steers == [
            {"type": "data-steer", "id": steer_id, "data": {"status": "accepted", "input": "be brief"}},
            {"type": "data-steer", "id": steer_id, "data": {"status": "applied"}},
        ]
        kinds = [part["type"] for part in parts]
        applied = kinds.index("data-steer", kinds.index("data-steer") + 1)
        assert kinds[applied - 1] == "text-end" and kinds[applied + 1] == "text-start"  # the text before it ends
        # AG-UI: a CUSTOM event of its own.
        ag_ui = await client.get("/v1/ag-ui/steered-chat", params={"last_event_id": "0"})
        events = [json.loads(line[6:]) for line in ag_ui.text.splitlines() if line.startswith("data: {")]
    custom = [event["value"] for event in events if event["type"] == "CUSTOM" and event["name"] == "steer"]
    assert custom == [
        {"steerId": steer_id, "status": "accepted", "input": "be brief"},
        {"steerId": steer_id, "status": "applied"},
    ]


@pytest.mark.ai_sdk
async def test_a_chat_message_sent_while_its_run_works_steers_it_where_the_deployment_says_so(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    gateway = await start_gateway(agents=AGENTS, chat_while_running="steer")
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        created = await _held_run(client, gates, "listening", chat_id="chat-that-steers")
        sid, rid = created["session_id"], created["run_id"]
        # useChat's request for the next message, sent while the answer streams (the first one shown).
        messages = [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]},
            {"id": rid, "role": "assistant", "parts": [{"type": "text", "text": "Working."}]},
            {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "be brief"}]},
        ]
        chat = {"id": "chat-that-steers", "messages": messages, "trigger": "submit-message"}
        async with client.stream("POST", "/v1/ai-sdk/chat", json=chat) as sent:
            assert sent.status_code == 200
            lines = sent.aiter_lines()
            parts: list[dict[str, Any]] = []
            async for line in lines:
                if line.startswith("data: {"):
                    parts.append(json.loads(line[6:]))
                    if parts[-1]["type"] == "data-steer":
                        break
            gates.release(rid)
            async for line in lines:
                if line.startswith("data: {"):
                    parts.append(json.loads(line[6:]))
        session = (await client.get(f"/v1/sessions/{sid}")).json()
    assert [run["run_id"] for run in session["runs"]] == [rid]  # no second run: the message steered this one
    assert parts[0]["type"] == "start" and parts[0]["messageId"].startswith(f"{rid}-steer-")  # a message of its own
    steers = [part["data"]["status"] for part in parts if part["type"] == "data-steer"]
    assert steers == ["accepted", "applied"]
    text = "".join(part["delta"] for part in parts if part["type"] == "text-delta")
    assert text == " Taken in: be brief." and parts[-1]["type"] == "finish"
