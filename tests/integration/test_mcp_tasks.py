"""MCP tasks as a client follows them without polling: `subscriptions/listen` with `taskIds` (the Tasks
extension's push, which the conformance suite does not judge yet: its `tasks-status-notifications` is
skipped there), read off the wire as the spec writes it: the ack first, naming the tasks it honors,
then `notifications/tasks`, each a `DetailedTask` stamped with the subscription's id. And a task whose
run starts child runs (docs/subagents.md), with a real worker: the children stay inside it, their
questions are its, answered through it, and cancelling it cancels them."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp.client.context import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    ElicitRequestParams,
    ElicitResult,
    InputRequiredResult,
    TextContent,
)

from tests.clients.mcp_client import TASKS, cancel_task, connect, get_task, until_status, update_task
from tests.fixtures.stack import Gateway
from tests.support.waiting import eventually, scaled
from tokentail.shared.vocabulary.records import child_run_id
from tokentail.shared.vocabulary.response_ids import parse_task_id, task_id

pytestmark = pytest.mark.mcp

AGENTS = {name: f"tests.agents.mcp_agents:{name}" for name in ("slow_compute", "confirm_delete", "delegate")}
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
        created = await client.session.call_tool("confirm_delete", {"filename": "a.txt"}, allow_claimed=True)
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
            async for message in messages:  # (a start it saw meanwhile is a change too)
                if message["params"]["status"] != "working":
                    assert message["params"]["status"] == "cancelled"
                    break
        async with listening(gateway.url, [task_id]) as (_, messages):
            await anext(messages)
            assert (await anext(messages))["params"]["status"] == "cancelled"
    slots = gateway.app.state.stream_slots
    await eventually(lambda: not slots._held, what="the listens' stream slots given back as their clients left")


async def test_a_listen_tells_a_child_run_s_question_as_the_task_s(gateway: Gateway) -> None:
    async with connect(gateway.url) as client:
        created = await client.session.call_tool("delegate", {"filename": "d.txt"}, allow_claimed=True)
        parent = created.task_id  # type: ignore[union-attr]
        child = child_run_id((parse_task_id(parent) or ("", ""))[1], "c_helper")
        async with listening(gateway.url, [parent]) as (_, messages):
            await anext(messages)
            async for message in messages:
                if message["params"]["status"] == "input_required":
                    break
                assert message["params"]["status"] == "working"  # also while it waits for its child
            ((key, request),) = message["params"]["inputRequests"].items()
            assert key.startswith(f"{child}:") and request["params"]["message"] == "Delete d.txt?"
            await update_task(client.session, parent, {key: {"action": "accept", "content": {"confirm": False}}})
            async for message in messages:
                if message["params"]["status"] != "working":
                    break
    assert message["params"]["status"] == "completed"
    assert message["params"]["result"]["content"] == [{"type": "text", "text": "the helper said: d.txt kept"}]


async def test_a_listen_for_tasks_needs_the_tasks_extension(gateway: Gateway) -> None:
    async with listening(gateway.url, [UNKNOWN], declares_tasks=False) as (status, messages):
        refused = await anext(messages)
    assert status == 400  # as the spec answers a missing capability on HTTP
    assert refused["error"]["code"] == -32021
    assert refused["error"]["data"]["requiredCapabilities"] == {"extensions": {TASKS: {}}}


async def test_a_child_run_s_question_is_its_parent_task_s_and_its_answer_reaches_the_child(gateway: Gateway) -> None:
    async with connect(gateway.url) as client:
        created = await client.session.call_tool("delegate", {"filename": "a.txt"}, allow_claimed=True)
        parent = created.task_id  # type: ignore[union-attr]
        session_id, run_id = parse_task_id(parent) or ("", "")
        child = child_run_id(run_id, "c_helper")
        waiting = await until_status(client.session, parent, "input_required")
        ((key, request),) = waiting["inputRequests"].items()
        assert key.startswith(f"{child}:") and request["params"]["message"] == "Delete a.txt?"
        with pytest.raises(MCPError) as unknown:  # the child is inside its parent's task: no task of its own
            await get_task(client.session, task_id(session_id, child))
        assert unknown.value.error.code == -32602
        await update_task(client.session, parent, {key: {"action": "accept", "content": {"confirm": True}}})
    session = await gateway.app.state.store.get_session(session_id)
    answered = next(run for run in session.runs if run.run_id == child)
    assert answered.answers == {key.removeprefix(f"{child}:"): {"confirm": True}}


async def test_a_call_without_the_tasks_extension_is_asked_a_child_run_s_question(gateway: Gateway) -> None:
    async def elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        raise AssertionError("the question comes back to this test, not to the callback")

    async with connect(gateway.url, tasks=False, elicitation_callback=elicit) as client:
        asked = await client.session.call_tool("delegate", {"filename": "b.txt"}, allow_input_required=True)
    assert isinstance(asked, InputRequiredResult) and asked.input_requests is not None
    ((key, request),) = asked.input_requests.items()
    assert ":" in key and request.params.message == "Delete b.txt?"  # type: ignore[union-attr]


async def test_the_task_goes_on_once_its_child_s_question_is_answered(gateway: Gateway) -> None:
    async with connect(gateway.url) as client:
        created = await client.session.call_tool("delegate", {"filename": "a.txt"}, allow_claimed=True)
        parent = created.task_id  # type: ignore[union-attr]
        waiting = await until_status(client.session, parent, "input_required")
        (key,) = waiting["inputRequests"]
        await update_task(client.session, parent, {key: {"action": "accept", "content": {"confirm": True}}})
        done = await until_status(client.session, parent, "completed")
    assert done["result"]["content"] == [{"type": "text", "text": "the helper said: a.txt deleted"}]
    asked: list[str] = []

    async def elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": False})

    async with connect(gateway.url, tasks=False, elicitation_callback=elicit) as client:
        result = await client.call_tool("delegate", {"filename": "b.txt"})
    assert asked == ["Delete b.txt?"]
    assert result.content == [TextContent(type="text", text="the helper said: b.txt kept")]


async def test_cancelling_a_task_cancels_the_child_runs_inside_it(gateway: Gateway) -> None:
    async with connect(gateway.url) as client:
        created = await client.session.call_tool("delegate", {"filename": "c.txt"}, allow_claimed=True)
        parent = created.task_id  # type: ignore[union-attr]
        session_id, run_id = parse_task_id(parent) or ("", "")
        await until_status(client.session, parent, "input_required")  # its child waits for an answer
        await cancel_task(client.session, parent)
        assert (await until_status(client.session, parent, "cancelled"))["status"] == "cancelled"
    store = gateway.app.state.store

    async def child_cancelled() -> None:
        runs = {run.run_id: run for run in (await store.get_session(session_id)).runs}
        assert runs[child_run_id(run_id, "c_helper")].status == "cancelled"

    await eventually(child_cancelled, within=10, what="the child run cancelled with its parent")
