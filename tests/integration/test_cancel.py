"""Cancel, from any gateway: the worker stops the run and writes `run.cancelled` last."""

import asyncio
import json
from typing import Any

import httpx2
import pytest
import websockets
from redis.asyncio import Redis

from tests.clients.sse_client import read_events
from tests.support.sessions import completion
from tests.support.waiting import eventually, scaled
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_run_id
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.worker.writes.run_writes import RunLease


async def _cancel_after(client: httpx2.AsyncClient, created: dict[str, Any], events: int) -> list[Any]:
    reader = asyncio.create_task(read_events(client, created["events_url"]))
    await read_events(client, created["events_url"], limit=events)
    response = await client.post(f"/v1/sessions/{created['session_id']}/cancel")
    assert response.status_code == 202
    assert response.json() == {"run_id": created["run_id"], "status": "cancelling"}
    received = await asyncio.wait_for(reader, scaled(5))  # the stream ends soon after
    assert received.ids == list(range(1, len(received.ids) + 1))
    return received.events


async def test_cancelling_a_streaming_run_ends_it_with_run_cancelled(start_gateway: Any, start_worker: Any) -> None:
    gateway = await start_gateway()
    worker = await start_worker()
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        params = {"tokens": 5000, "tokens_per_second": 100}
        created = (await client.post("/v1/sessions", json={"input": "long", "params": params})).json()
        events = await _cancel_after(client, created, 5)
        kind, cancelled = events[-1][1:]
        assert kind == "run.cancelled" and cancelled["reason"] == "cancelled by request"
        # What the model streamed before the cancel is paid for: its report would have come at the
        # call's end, so it is estimated, and said to be.
        usage = cancelled["usage"]
        assert usage["output_tokens"] == usage["attempts"][0]["estimated_output_tokens"] > 0
        assert "run.completed" not in [kind for _, kind, _ in events]
        assert len(worker.running) == 0
        again = await client.post(f"/v1/sessions/{created['session_id']}/cancel")
        assert again.json() == {"run_id": None, "status": "idle"}
        state = (await client.get(f"/v1/sessions/{created['session_id']}")).json()
        assert state["status"] == "idle" and state["runs"][0]["status"] == "cancelled"
        # The session takes the next run.
        follow_up = await client.post(f"/v1/sessions/{created['session_id']}/runs", json={"input": "short"})
        assert follow_up.status_code == 202


async def test_cancelling_during_a_tool_call_fails_the_call_then_the_run(start_gateway: Any, start_worker: Any) -> None:
    agents = {"slow": "tests.agents.slow_agent:slow_tool_agent"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        created = (await client.post("/v1/sessions", json={"input": "find it", "agent": "slow"})).json()
        events = await _cancel_after(client, created, 4)  # queued, started, delta, tool.started
    kinds = [kind for _, kind, _ in events]
    assert kinds[-3:] == ["tool.started", "tool.failed", "run.cancelled"]
    assert events[-2][2]["error"] == "cancelled"


async def test_an_agent_that_swallowed_its_cancel_stops_at_its_next_word(start_gateway: Any, start_worker: Any) -> None:
    agents = {"swallows": "tests.agents.slow_agent:cancel_swallowing_agent"}
    gateway = await start_gateway(agents=agents)
    worker = await start_worker(agents=agents)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        created = (await client.post("/v1/sessions", json={"input": "talk", "agent": "swallows"})).json()
        events = await _cancel_after(client, created, 5)  # before: it talked its minute out, and completed
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "run.cancelled" and "run.completed" not in kinds
    assert kinds.count("message.delta") < 100, "it stopped at its next word, not at its end"
    await eventually(lambda: len(worker.running) == 0, what="the run's task ended")


async def test_a_queued_run_no_worker_holds_is_cancelled_at_once(
    start_gateway: Any, start_worker: Any, redis: Redis, settings: Settings
) -> None:
    gateway = await start_gateway()
    keys = Keys(settings.key_prefix)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        created = (await client.post("/v1/sessions", json={"input": "hi"})).json()
        assert await redis.zcard(keys.tenant_line("public")) == 1
        cancel = await client.post(f"/v1/sessions/{created['session_id']}/cancel")
        assert cancel.json() == {"run_id": created["run_id"], "status": "cancelled"}
        received = await asyncio.wait_for(read_events(client, created["events_url"]), scaled(5))  # no worker needed
        assert [kind for _, kind, _ in received.events] == ["run.queued", "run.cancelled"]
        # Its job left its tenant's line and arq's queue with the cancel: its place is free at once.
        assert await redis.zcard(keys.tenant_line("public")) == 0
        assert await redis.zcard(keys.queue) == 0
        assert not await redis.exists(keys.arq_job(created["run_id"]))
        await start_worker()  # finds nothing to run
        again = await read_events(client, created["events_url"], last_event_id=received.ids[-1])
        assert again.status == 204


async def test_interrupting_a_queued_run_no_worker_holds_starts_the_new_one_at_once(
    start_gateway: Any, start_worker: Any
) -> None:
    gateway = await start_gateway()
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        created = (await client.post("/v1/sessions", json={"input": "first"})).json()
        body = {"input": "second", "multitask": "interrupt", "params": {"tokens": 3}}
        second = (await client.post(f"/v1/sessions/{created['session_id']}/runs", json=body)).json()
        state = (await client.get(f"/v1/sessions/{created['session_id']}")).json()
        assert state["active_run_id"] == second["run_id"] and state["runs"][0]["status"] == "cancelled"
        await start_worker()
        received = await asyncio.wait_for(read_events(client, created["events_url"]), scaled(5))
    order = [(data["run_id"], kind) for _, kind, data in received.events]
    assert order[:3] == [
        (created["run_id"], "run.queued"),
        (second["run_id"], "run.queued"),
        (created["run_id"], "run.cancelled"),
    ]
    assert (created["run_id"], "run.started") not in order and order[-1] == (second["run_id"], "run.completed")


async def test_enqueue_runs_the_follow_up_after_the_active_run(start_gateway: Any, start_worker: Any) -> None:
    gateway = await start_gateway()
    await start_worker()
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        params = {"tokens": 40, "tokens_per_second": 200}
        created = (await client.post("/v1/sessions", json={"input": "first", "params": params})).json()
        body = {"input": "second", "multitask": "enqueue"}
        follow_up = await client.post(f"/v1/sessions/{created['session_id']}/runs", json=body)
        assert follow_up.status_code == 202
        received = await asyncio.wait_for(read_events(client, created["events_url"]), scaled(10))
    assert received.ids == list(range(1, len(received.ids) + 1))
    order = [(data["run_id"], kind) for _, kind, data in received.events if kind.startswith("run.")]
    first, second = created["run_id"], follow_up.json()["run_id"]
    assert order.index((first, "run.completed")) < order.index((second, "run.started"))
    assert (second, "run.queued") in order and order[-1] == (second, "run.completed")
    assert len(order) == 6


async def test_interrupt_cancels_the_active_run_then_runs_the_new_one(start_gateway: Any, start_worker: Any) -> None:
    gateway = await start_gateway()
    await start_worker()
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        params = {"tokens": 5000, "tokens_per_second": 100}
        created = (await client.post("/v1/sessions", json={"input": "long", "params": params})).json()
        reader = asyncio.create_task(read_events(client, created["events_url"]))
        await read_events(client, created["events_url"], limit=4)
        body = {"input": "stop that", "multitask": "interrupt", "params": {"tokens": 5}}
        interrupting = (await client.post(f"/v1/sessions/{created['session_id']}/runs", json=body)).json()
        received = await asyncio.wait_for(reader, scaled(10))
    ends = [(data["run_id"], kind) for _, kind, data in received.events if kind in ("run.cancelled", "run.completed")]
    assert ends == [(created["run_id"], "run.cancelled"), (interrupting["run_id"], "run.completed")]


# -- a stop meant for the run a client saw, landing after that run ended and the next one started ---

STOPS = ["native", "native without run_id", "ai-sdk", "ag-ui", "websocket"]


@pytest.mark.ai_sdk
@pytest.mark.ag_ui
@pytest.mark.parametrize("path", STOPS)
async def test_a_stop_for_the_run_the_client_saw_does_not_cancel_the_next_one(
    path: str, start_gateway: Any, runs: AllWrites, store: SessionStore
) -> None:
    """Each way a client stops a run, at its worst instant: between what the client saw (run 1
    going) and the cancel, run 1 ends and run 2 starts. Only a client that names no run over
    HTTP (`native without run_id`: the API as it was) cancels whatever is active then."""
    gateway = await start_gateway()  # no worker: this test runs the runs
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
        created = (await client.post("/v1/sessions", json={"chat_id": "chat-stop", "input": "first"})).json()
        session_id, first = created["session_id"], created["run_id"]
        assert await runs.start_run(session_id, first, first, token="lease") is not None
        gateway_runs: AllWrites = gateway.app.state.runs
        cancel = gateway_runs.cancel_run
        second = RunRecord(run_id=new_run_id(), input="second")

        async def after_the_next_run_started(*args: Any, **kwargs: Any) -> Any:
            await runs.queue_run(session_id, second, multitask="enqueue")
            await RunLease(runs, session_id, first, "lease").append([], ending=completion(first))  # 2 starts
            return await cancel(*args, **kwargs)

        gateway_runs.cancel_run = after_the_next_run_started  # type: ignore[method-assign]
        named = {"run_id": first}
        if path == "websocket":
            async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/v1/sessions/{session_id}/ws") as ws:
                while json.loads(await ws.recv()).get("event") != "run.started":
                    pass  # the socket has shown run 1 going
                await ws.send(json.dumps({"type": "cancel"}))
                while (ack := json.loads(await ws.recv())).get("type") != "ack":
                    pass
            answer = {key: ack.get(key) for key in ("run_id", "status")}
        else:
            url, body = {
                "native": (f"/v1/sessions/{session_id}/cancel", named),
                "native without run_id": (f"/v1/sessions/{session_id}/cancel", None),
                "ai-sdk": ("/v1/ai-sdk/chat/chat-stop/stop", named),
                "ag-ui": ("/v1/ag-ui/chat-stop/stop", named),
            }[path]
            response = await client.post(url, json=body)
            assert response.status_code == 202
            answer = response.json()
    statuses = {run.run_id: run.status for run in (await store.get_session(session_id)).runs}
    if path == "native without run_id":
        assert statuses == {first: "completed", second.run_id: "cancelled"}
        assert answer == {"run_id": second.run_id, "status": "cancelled"}
    else:
        assert statuses == {first: "completed", second.run_id: "queued"}  # run 2 goes on
        assert answer == {"run_id": first, "status": "not_active"}


async def test_a_stop_naming_a_run_of_another_session_is_404(start_gateway: Any) -> None:
    gateway = await start_gateway()
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
        created = (await client.post("/v1/sessions", json={"input": "first"})).json()
        refused = await client.post(f"/v1/sessions/{created['session_id']}/cancel", json={"run_id": "r_notinthissess"})
        assert refused.status_code == 404 and refused.json()["error"]["type"] == "run_not_found"
        wrong = await client.post(f"/v1/sessions/{created['session_id']}/cancel", json={"run_id": 7})
        assert wrong.status_code == 422
        body = {"run_id": created["run_id"], "chat": "x"}  # what else a client sends is ignored, as before
        cancelled = await client.post(f"/v1/sessions/{created['session_id']}/cancel", json=body)
        assert cancelled.json() == {"run_id": created["run_id"], "status": "cancelled"}
