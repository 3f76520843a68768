"""A run's child runs (docs/subagents.md) on A2A, judged by `a2a-sdk`'s client against a real gateway and
worker: each child is a task of the same context whose first message names its parent's task
(`referenceTaskIds`), read through the parent agent's endpoint; the parent's status updates and Task
name its children (tokentail's sub-task extension, declared in the card); a child's question is its
own task's; cancelling the parent cancels its children."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.client.client import Client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from google.protobuf.struct_pb2 import Value  # type: ignore[import-untyped]

from tests.fixtures.stack import Gateway
from tests.support.waiting import eventually
from tokentail.gateway.protocols.a2a.render import SUBTASKS_EXTENSION
from tokentail.shared.vocabulary.records import child_run_id
from tokentail.shared.vocabulary.response_ids import parse_task_id, task_id

pytestmark = pytest.mark.a2a

AGENTS = {
    "parent": "tests.agents.spawning_agents:two_children",
    "echo": "tests.agents.spawning_agents:echo",
    "delegate": "tests.agents.mcp_agents:delegate",
    "confirm_delete": "tests.agents.mcp_agents:confirm_delete",
}


@pytest.fixture
async def gateway(start_gateway: Any, start_worker: Any) -> Gateway:
    started: Gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    await started.sees_published("delegate")
    return started


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def client_of(gateway: Gateway, http: httpx.AsyncClient, agent: str, **options: Any) -> Client:
    config = ClientConfig(httpx_client=http, **options)
    return await create_client(gateway.url, config, relative_card_path=f"/a2a/{agent}/.well-known/agent-card.json")


def say(text: str) -> SendMessageRequest:
    return SendMessageRequest(message=Message(message_id="m-1", role=Role.ROLE_USER, parts=[Part(text=text)]))


def data(values: dict[str, Any], task: str | None = None) -> SendMessageRequest:
    value = Value()
    value.struct_value.update(values)
    message = Message(message_id="m-2", role=Role.ROLE_USER, parts=[Part(data=value)], task_id=task or "")
    return SendMessageRequest(message=message)


def state_of(event: StreamResponse) -> Any:
    return event.task.status.state if event.HasField("task") else event.status_update.status.state


def children_in(event: StreamResponse) -> list[dict[str, Any]] | None:
    kind = event.WhichOneof("payload")
    tree = MessageToDict(getattr(event, kind)).get("metadata", {}).get(SUBTASKS_EXTENSION)
    return None if tree is None else tree.get("children")


async def test_each_child_is_a_task_of_the_context_named_by_its_parent_and_naming_it(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    client = await client_of(gateway, http, "parent")
    card = (await http.get(f"{gateway.url}/a2a/parent/.well-known/agent-card.json")).json()
    assert SUBTASKS_EXTENSION in {extension["uri"] for extension in card["capabilities"]["extensions"]}
    events = [event async for event in client.send_message(say("hi"))]
    parent = events[0].task
    session_id, run_id = parse_task_id(parent.id) or ("", "")
    a, b = (task_id(session_id, child_run_id(run_id, call)) for call in ("c_a", "c_b"))
    assert state_of(events[-1]) == TaskState.TASK_STATE_COMPLETED
    told = [children for event in events if (children := children_in(event)) is not None]
    assert {child["taskId"] for child in told[-1]} == {a, b}  # its status updates name its children
    assert {child["state"] for child in told[-1]} == {"TASK_STATE_COMPLETED"}

    read = await client.get_task(GetTaskRequest(id=parent.id))
    assert [child["taskId"] for child in MessageToDict(read)["metadata"][SUBTASKS_EXTENSION]["children"]] == [a, b]
    assert read.artifacts[0].parts[0].text == "Asking two. Got echo[a] and echo[b]."
    child = await client.get_task(GetTaskRequest(id=a))  # through its parent's agent: any agent's child
    assert (child.context_id, child.status.state) == (parent.context_id, TaskState.TASK_STATE_COMPLETED)
    assert list(child.history[0].reference_task_ids) == [parent.id] and child.history[0].parts[0].text == "a"
    assert child.artifacts[0].parts[0].text == "echo[a]"
    assert MessageToDict(child)["metadata"][SUBTASKS_EXTENSION] == {"parentTaskId": parent.id}

    listed = await client.list_tasks(ListTasksRequest(context_id=parent.context_id))
    assert {task.id for task in listed.tasks} == {parent.id, a, b}
    (first,) = [task for task in listed.tasks if task.id == b]
    assert list(first.history[0].reference_task_ids) == [parent.id]


async def test_a_child_s_question_is_its_own_task_s_and_its_parent_says_so(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    client = await client_of(gateway, http, "delegate")
    events: list[StreamResponse] = []
    async for event in client.send_message(data({"filename": "a.txt"})):
        events.append(event)
        if any(child["state"] == "TASK_STATE_INPUT_REQUIRED" for child in children_in(event) or ()):
            break  # the parent goes on working while its child waits: the stream would too
    parent = events[0].task
    session_id, run_id = parse_task_id(parent.id) or ("", "")
    child = task_id(session_id, child_run_id(run_id, "c_helper"))
    assert state_of(events[-1]) == TaskState.TASK_STATE_WORKING
    asking = await client.get_task(GetTaskRequest(id=child))
    assert asking.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert asking.status.message.parts[0].text == "Delete a.txt?"
    polling = await client_of(gateway, http, "delegate", streaming=False, polling=True)
    [event async for event in polling.send_message(data({"confirm": True}, task=child))]  # the child's answer
    session = await gateway.app.state.store.get_session(session_id)
    (answered,) = [run for run in session.runs if run.run_id == child_run_id(run_id, "c_helper")]
    assert list(answered.answers.values()) == [{"confirm": True}]


async def test_cancelling_a_task_cancels_its_children(gateway: Gateway, http: httpx.AsyncClient) -> None:
    client = await client_of(gateway, http, "delegate")
    async for event in client.send_message(data({"filename": "b.txt"})):
        if any(child["state"] == "TASK_STATE_INPUT_REQUIRED" for child in children_in(event) or ()):
            break
    parent = event.task.id if event.HasField("task") else event.status_update.task_id
    session_id, run_id = parse_task_id(parent) or ("", "")
    child = task_id(session_id, child_run_id(run_id, "c_helper"))
    cancelled = await client.cancel_task(CancelTaskRequest(id=parent))
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED

    async def child_cancelled() -> None:
        assert (await client.get_task(GetTaskRequest(id=child))).status.state == TaskState.TASK_STATE_CANCELED

    await eventually(child_cancelled, within=10, what="the child's task cancelled with its parent's")
