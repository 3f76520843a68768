"""MCP tasks as a client follows them without polling: `subscriptions/listen` with `taskIds` (the Tasks
extension's push, which the conformance suite does not judge yet: its `tasks-status-notifications` is
skipped there), read off the wire as the spec writes it: the ack first, naming the tasks it honors,
then `notifications/tasks`, each a `DetailedTask` stamped with the subscription's id."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp.types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY

from tests.clients.mcp_client import TASKS, cancel_task, connect, update_task
from tests.fixtures.stack import Gateway
from tests.support.waiting import eventually, scaled

pytestmark = pytest.mark.mcp

AGENTS = {"slow_compute": "tests.agents.mcp_agents:slow_compute", "confirm": "tests.agents.mcp_agents:confirm_delete"}
SUBSCRIPTION = "io.modelcontextprotocol/subscriptionId"
UNKNOWN = "s_" + "a" * 22 + "r_" + "b" * 12


@pytest.fixture
async def gateway(start_gateway: Any, start_worker: Any) -> Gateway:
    started: Gateway = await start_gateway(agents=AGENTS, mcp_task_after_seconds=0)  # a call is a task at once
    await start_worker(agents=AGENTS)
    return started


@asynccontextmanager
async def listening(
    url: str, task_ids: list[str], declares_tasks: bool = True
) -> AsyncIterator[tuple[int, AsyncIterator[Any]]]:
    """The HTTP status and the JSON-RPC messages of one `subscriptions/listen` request, as they come."""
    capabilities: dict[str, Any] = {"extensions": {TASKS: {}}} if declares_tasks else {}
    meta = {
        PROTOCOL_VERSION_META_KEY: "2026-07-28",
        CLIENT_INFO_META_KEY: {"name": "a test", "version": "1"},
        CLIENT_CAPABILITIES_META_KEY: capabilities,
    }
    params = {"notifications": {"taskIds": task_ids}, "_meta": meta}
    body = {"jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen", "params": params}
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "subscriptions/listen",
    }
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=scaled(60))) as http,
        http.stream("POST", f"{url}/mcp", json=body, headers=headers) as response,
    ):

        async def messages() -> AsyncIterator[Any]:
            if not response.headers["content-type"].startswith("text/event-stream"):
                yield json.loads(await response.aread())
                return
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    yield json.loads(line.removeprefix("data:"))

        yield response.status_code, messages()


async def test_a_listen_tells_a_task_as_it_asks_is_answered_and_completes(gateway: Gateway) -> None:
    async with connect(gateway.url) as client:
        created = await client.session.call_tool("confirm", {"filename": "a.txt"}, allow_claimed=True)
        task_id = created.task_id  # type: ignore[union-attr]
        async with listening(gateway.url, [task_id, UNKNOWN]) as (_, messages):
            ack = await anext(messages)
            assert ack["method"] == "notifications/subscriptions/acknowledged"
            assert ack["params"]["notifications"] == {"taskIds": [task_id]}  # the unknown one left out
            assert ack["params"]["_meta"][SUBSCRIPTION] == "listen-1"
            told = []
            async for message in messages:
                assert message["method"] == "notifications/tasks"
                assert message["params"]["_meta"] == {SUBSCRIPTION: "listen-1"}
                told.append(message["params"])
                if message["params"]["status"] == "input_required":
                    break
                assert message["params"]["status"] == "working"
            (request,) = told[-1]["inputRequests"].values()
            assert request["params"]["message"] == "Delete a.txt?"
            (key,) = told[-1]["inputRequests"]
            await update_task(client.session, task_id, {key: {"action": "accept", "content": {"confirm": True}}})
            async for message in messages:
                told.append(message["params"])
                if message["params"]["status"] != "working":
                    break
    assert {task["taskId"] for task in told} == {task_id}
    ended = told[-1]
    assert ended["status"] == "completed"
    assert ended["result"]["content"] == [{"type": "text", "text": "a.txt deleted"}]
    assert all(before != after for before, after in zip(told, told[1:], strict=False))  # each a change


async def test_a_task_cancelled_is_told_cancelled_and_one_that_ended_is_told_as_it_is(gateway: Gateway) -> None:
    async with connect(gateway.url) as client:
        created = await client.session.call_tool("slow_compute", {"seconds": 60}, allow_claimed=True)
        task_id = created.task_id  # type: ignore[union-attr]
        async with listening(gateway.url, [task_id]) as (_, messages):
            assert (await anext(messages))["params"]["notifications"]["taskIds"] == [task_id]
            assert (await anext(messages))["params"]["status"] == "working"
            await cancel_task(client.session, task_id)
            assert (await anext(messages))["params"]["status"] == "cancelled"
        async with listening(gateway.url, [task_id]) as (_, messages):
            await anext(messages)
            assert (await anext(messages))["params"]["status"] == "cancelled"
    slots = gateway.app.state.stream_slots
    await eventually(lambda: not slots._held, what="the listens' stream slots given back as their clients left")


async def test_a_listen_for_tasks_needs_the_tasks_extension(gateway: Gateway) -> None:
    async with listening(gateway.url, [UNKNOWN], declares_tasks=False) as (status, messages):
        refused = await anext(messages)
    assert status == 400  # as the spec answers a missing capability on HTTP
    assert refused["error"]["code"] == -32021
    assert refused["error"]["data"]["requiredCapabilities"] == {"extensions": {TASKS: {}}}
