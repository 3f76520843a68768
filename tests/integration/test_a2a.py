"""A2A 1.0 (gateway/protocols/a2a/routes.py) judged by its official Python client, `a2a-sdk`, against real
gateways, a real worker and Redis: discovery, both bindings, streams resumed on another gateway,
questions, cancel, push notification configs delivered as signed webhooks, keys."""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2AClientError, ClientCallContext, ClientConfig, create_client
from a2a.client.client import Client
from a2a.types.a2a_pb2 import (
    AuthenticationInfo,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import InternalError, InvalidParamsError, TaskNotFoundError, UnsupportedOperationError
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from google.protobuf.struct_pb2 import Value  # type: ignore[import-untyped]
from pydantic import SecretStr

from tests.agents.asking_agent import AFTER_THE_ANSWER, BEFORE_THE_QUESTION
from tests.agents.counting_agents import own_answer
from tests.fixtures.stack import Gateway
from tests.integration.test_auth import KEY_A, KEY_B, SECRET
from tests.servers.webhook_receiver import Receiver
from tests.support.waiting import eventually
from tokentail.gateway.protocols.a2a.render import RESUME_EXTENSION
from tokentail.shared.features.a2a_push import PushConfig, PushConfigs
from tokentail.worker import metrics

pytestmark = pytest.mark.a2a


AGENTS = {
    "asking": "tests.agents.asking_agent:ask_then_answer",
    "parallel": "tests.agents.asking_agent:parallel_approvals",
    "described": "tests.agents.described_agents:add",
    "slow": "tests.agents.slow_agent:slow_tool_agent",
    "stepping": "tests.agents.counting_agents:stepping",
}
HOOKS = "/a2a-hooks/"
FINAL_STATES = (
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_INPUT_REQUIRED,
)
SETTINGS = {
    "agents": AGENTS,
    "api_keys": SecretStr(f"acme:{KEY_A},beta:{KEY_B}"),
    "secret": SecretStr(SECRET),
}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


@pytest.fixture
async def gateways(
    start_gateway: Any, start_worker: Any, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Gateway, Gateway]:
    monkeypatch.setenv("TOKENTAIL_TEST_TOOL_RUNS", str(tmp_path / "runs"))
    (tmp_path / "runs").touch()
    settings = {**SETTINGS, "webhook_allowed_urls": [receiver.url + HOOKS]}
    one: Gateway = await start_gateway(**settings)
    two: Gateway = await start_gateway(**settings)
    await start_worker(**settings)
    for gateway in (one, two):  # the agents' cards and arguments as the worker says, not the defaults
        await gateway.sees_published("described")
    return one, two


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as client:
        yield client


async def client_of(url: str, http: httpx.AsyncClient, agent: str | None = None, **config: Any) -> Client:
    """a2a-sdk's client, from the agent's card (the default agent's at the server's root)."""
    path = f"/a2a/{agent}/.well-known/agent-card.json" if agent else None
    return await create_client(url, ClientConfig(httpx_client=http, **config), relative_card_path=path)


def say(text: str, **ids: str) -> SendMessageRequest:
    message = Message(message_id=f"m-{text[:8]}", role=Role.ROLE_USER, parts=[Part(text=text)], **ids)
    return SendMessageRequest(message=message)


def answer(task_id: str, data: dict[str, Any]) -> SendMessageRequest:
    value = Value()
    value.struct_value.update(data)
    message = Message(message_id="m-answer", role=Role.ROLE_USER, parts=[Part(data=value)], task_id=task_id)
    return SendMessageRequest(message=message)


def answer_to(task_id: str, input_id: str, data: dict[str, Any]) -> SendMessageRequest:
    """An answer to the question `input_id` names (its task waits on several)."""
    request = answer(task_id, data)
    request.message.metadata.update({"inputId": input_id})
    return request


def text_of(events: list[StreamResponse]) -> str:
    """The `answer` artifact as a client folds the events: the Task's, then each update."""
    parts: list[str] = []
    for event in events:
        if event.HasField("task"):
            parts = [part.text for artifact in event.task.artifacts for part in artifact.parts]
        elif event.HasField("artifact_update"):
            update = event.artifact_update
            texts = [part.text for part in update.artifact.parts]
            parts = parts + texts if update.append else texts
    return "".join(parts)


def status_of(event: StreamResponse) -> Any:
    return event.task.status if event.HasField("task") else event.status_update.status


def generation(event: StreamResponse) -> int:
    return int(resume(event)["generation"])


def resume(event: StreamResponse) -> dict[str, Any]:
    kind = event.WhichOneof("payload")
    found: dict[str, Any] = MessageToDict(getattr(event, kind))["metadata"][RESUME_EXTENSION]
    return found


async def test_discover_and_stream_a_task_then_read_it_on_another_gateway(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient
) -> None:
    one, two = gateways
    client = await client_of(one.url, http)
    events = [event async for event in client.send_message(say("hello there"))]
    first = events[0]
    assert first.HasField("task")  # the Task first, as the run's events so far make it
    assert status_of(events[-1]).state == TaskState.TASK_STATE_COMPLETED
    text = "".join(
        [part.text for artifact in first.task.artifacts for part in artifact.parts]
        + [part.text for e in events if e.HasField("artifact_update") for part in e.artifact_update.artifact.parts]
    )
    assert text
    generations = [int(resume(e)["generation"]) for e in events]  # one more per event: nothing missed
    assert generations == list(range(generations[0], generations[0] + len(events)))
    other = await client_of(two.url, http)
    task = await other.get_task(GetTaskRequest(id=first.task.id))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.artifacts[0].parts[0].text == text
    assert MessageToDict(task)["metadata"][RESUME_EXTENSION]["generation"] == generations[-1]


async def test_a_dropped_stream_resumes_on_the_other_gateway_with_nothing_lost_or_twice(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient
) -> None:
    one, two = gateways
    client = await client_of(one.url, http, "stepping")
    seen: list[StreamResponse] = []
    async for event in client.send_message(say("count")):
        seen.append(event)
        if event.HasField("artifact_update") and len(seen) > 5:
            break  # the client drops the stream mid-answer
    task_id = seen[0].task.id
    last = resume(seen[-1])["eventId"]
    other = await client_of(two.url, http, "stepping")
    resumed = ClientCallContext(service_parameters={"Last-Event-ID": last})
    rest = [event async for event in other.subscribe(SubscribeToTaskRequest(id=task_id), context=resumed)]
    assert rest[0].HasField("task") and generation(rest[0]) == generation(seen[-1])
    assert text_of(rest[:1]) == text_of(seen)  # the Task as the client had it
    assert [generation(e) for e in rest[1:]] == list(range(generation(seen[-1]) + 1, generation(rest[-1]) + 1))
    assert text_of(seen + rest[1:]) == own_answer(42)
    assert status_of(rest[-1]).state == TaskState.TASK_STATE_COMPLETED
    # Without the extension, an ended task is the spec's error; GetTask has it whole.
    with pytest.raises(UnsupportedOperationError, match="completed"):
        [event async for event in other.subscribe(SubscribeToTaskRequest(id=task_id))]
    task = await other.get_task(GetTaskRequest(id=task_id))
    assert task.artifacts[0].parts[0].text == own_answer(42)


@pytest.mark.parametrize(
    "position", ["\u00b2", "1" * 5000, "-1", "x"], ids=["superscript-two", "5000-digits", "minus", "x"]
)
async def test_a_subscribe_with_a_last_event_id_that_is_no_event_id_is_invalid_params_and_logs_no_error(
    position: str, gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Read as every route reads an event id (it was `isdigit()` then `int()`: `²` and 5,000 digits
    pass the first and fail the second, an internal error with Python's message and a traceback)."""
    one, _ = gateways
    polling = await client_of(one.url, http, "slow", streaming=False, polling=True)
    task_id = [event async for event in polling.send_message(say("search"))][0].task.id
    headers = {b"A2A-Version": b"1.0", b"Last-Event-ID": position.encode("latin-1")}  # the bytes on the wire
    subscribe = {"jsonrpc": "2.0", "id": 1, "method": "SubscribeToTask", "params": {"id": task_id}}
    error = (await http.post(f"{one.url}/a2a/slow", json=subscribe, headers=headers)).json()["error"]
    assert error["code"] == -32602 and "Last-Event-ID must be a non-negative integer event id" in error["message"]
    rest = await http.get(f"{one.url}/a2a/slow/tasks/{task_id}:subscribe", headers=headers)
    assert rest.status_code == 400 and rest.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert len(error["message"]) < 200 and len(rest.json()["error"]["message"]) < 200  # the id not echoed whole
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    await polling.cancel_task(CancelTaskRequest(id=task_id))


async def test_a_question_answered_by_the_next_message_on_its_task(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient
) -> None:
    one, two = gateways
    asked = [event async for event in (await client_of(one.url, http, "asking")).send_message(say("delete"))]
    status = status_of(asked[-1])
    assert status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    prompt, needed = status.message.parts
    assert prompt.text == "Delete 3 files?" and MessageToDict(needed)["data"]["kind"] == "approval"
    task_id = asked[0].task.id
    other = await client_of(two.url, http, "asking")
    went_on = [event async for event in other.send_message(answer(task_id, {"approved": True}))]
    assert went_on[0].HasField("task") and status_of(went_on[-1]).state == TaskState.TASK_STATE_COMPLETED
    words = "".join(f"Word {word}. " for word in range(AFTER_THE_ANSWER))
    assert text_of(went_on) == BEFORE_THE_QUESTION + words
    with pytest.raises(UnsupportedOperationError, match="completed"):  # a message on an ended task
        [event async for event in other.send_message(answer(task_id, {"approved": True}))]


async def test_two_questions_asked_at_once_are_answered_by_messages_naming_each(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient
) -> None:
    one, two = gateways
    asked = [event async for event in (await client_of(one.url, http, "parallel")).send_message(say("clean up"))]
    status = status_of(asked[-1])  # the status names each question open (the Task, or the last update)
    assert status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    parts = status.message.parts
    questions = {
        text.text: MessageToDict(data)["data"]["inputId"] for text, data in zip(parts[::2], parts[1::2], strict=True)
    }
    assert sorted(questions) == ["Delete cache?", "Delete logs?"]
    task_id = asked[0].task.id
    other = await client_of(two.url, http, "parallel")
    with pytest.raises(InvalidParamsError, match="several questions"):  # which one? it must say
        [e async for e in other.send_message(answer(task_id, {"approved": True}))]
    first = [e async for e in other.send_message(answer_to(task_id, questions["Delete cache?"], {"approved": False}))]
    left = status_of(first[-1])  # the other question is still open, and the status says which
    assert left.state == TaskState.TASK_STATE_INPUT_REQUIRED and left.message.parts[0].text == "Delete logs?"
    assert len(left.message.parts) == 2
    went_on = [e async for e in other.send_message(answer_to(task_id, questions["Delete logs?"], {"approved": True}))]
    assert status_of(went_on[-1]).state == TaskState.TASK_STATE_COMPLETED
    assert text_of(went_on) == "Checking. logs deleted, cache kept."


async def test_an_answer_refused_for_its_push_config_leaves_the_question_unanswered(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """A message that answers a task's question with a push config it cannot take answers nothing
    (it answered the question, then was refused): the task still waits, and takes the answer again."""
    one, _ = gateways
    client = await client_of(one.url, http, "asking")
    task_id = [event async for event in client.send_message(say("delete"))][0].task.id
    for config in (
        TaskPushNotificationConfig(url="http://169.254.169.254/latest"),
        TaskPushNotificationConfig(url=receiver.url + HOOKS, token="jeton-à-moi"),
    ):
        refused = answer(task_id, {"approved": True})
        refused.configuration.task_push_notification_config.CopyFrom(config)
        with pytest.raises(InvalidParamsError):
            [event async for event in client.send_message(refused)]
        task = await client.get_task(GetTaskRequest(id=task_id))
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED  # not answered
        configs = ListTaskPushNotificationConfigsRequest(task_id=task_id)
        assert list((await client.list_task_push_notification_configs(configs)).configs) == []
    went_on = [event async for event in client.send_message(answer(task_id, {"approved": True}))]
    assert status_of(went_on[-1]).state == TaskState.TASK_STATE_COMPLETED


async def test_cancel_from_the_other_gateway_and_list_the_tasks(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient
) -> None:
    one, two = gateways
    polling = await client_of(one.url, http, "slow", streaming=False, polling=True)
    started = [event async for event in polling.send_message(say("search"))][0].task
    assert started.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
    other = await client_of(two.url, http, "slow")
    cancelled = await other.cancel_task(CancelTaskRequest(id=started.id))
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    again = await other.cancel_task(CancelTaskRequest(id=started.id))  # idempotent
    assert again.status.state == TaskState.TASK_STATE_CANCELED
    follow_up = [e async for e in polling.send_message(say("more", context_id=started.context_id))][0].task
    third = [e async for e in polling.send_message(say("third"))][0].task
    listed = await other.list_tasks(ListTasksRequest(page_size=2))
    assert [task.id for task in listed.tasks] == [third.id, follow_up.id] and listed.next_page_token
    rest = await other.list_tasks(ListTasksRequest(page_size=2, page_token=listed.next_page_token))
    assert [task.id for task in rest.tasks] == [started.id] and rest.next_page_token == ""
    of_context = await other.list_tasks(ListTasksRequest(context_id=started.context_id))
    assert {task.id for task in of_context.tasks} == {started.id, follow_up.id}
    for task in (follow_up, third):
        await other.cancel_task(CancelTaskRequest(id=task.id))


async def test_push_configs_are_delivered_as_signed_stream_responses(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient, receiver: Receiver
) -> None:
    one, two = gateways
    client = await client_of(one.url, http, "slow", streaming=False, polling=True)
    task = [e async for e in client.send_message(say("search"))][0].task
    other = await client_of(two.url, http, "slow")
    auth = AuthenticationInfo(scheme="Bearer", credentials="receiver-secret")
    config = TaskPushNotificationConfig(
        task_id=task.id, url=receiver.url + HOOKS + "a", token="t1", authentication=auth
    )
    made = await other.create_task_push_notification_config(config)
    assert made.id and made.url == config.url
    got = await client.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=task.id, id=made.id)
    )
    assert got.url == config.url
    listed = await client.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=task.id))
    assert [c.id for c in listed.configs] == [made.id]
    refused = TaskPushNotificationConfig(task_id=task.id, url="http://169.254.169.254/latest")
    with pytest.raises(InvalidParamsError, match="not under any URL the operator allows"):
        await other.create_task_push_notification_config(refused)
    unsendable = TaskPushNotificationConfig(task_id=task.id, url=config.url, token="jeton-à-moi")
    with pytest.raises(InvalidParamsError, match="token: printable ASCII"):  # no header could carry it
        await other.create_task_push_notification_config(unsendable)
    await other.cancel_task(CancelTaskRequest(id=task.id))

    def delivered() -> dict[str, Any]:
        assert receiver.accepted(), "no delivery yet"
        delivery = receiver.accepted()[0]
        return {"headers": delivery.headers, "body": json.loads(delivery.body)}

    delivery = await eventually(delivered)
    assert delivery["headers"]["authorization"] == "Bearer receiver-secret"
    assert delivery["headers"]["x-a2a-notification-token"] == "t1"
    assert delivery["headers"]["webhook-signature"].startswith("v1,")
    update = delivery["body"]["statusUpdate"]
    assert (update["taskId"], update["status"]["state"]) == (task.id, "TASK_STATE_CANCELED")
    for _ in range(2):  # deleting twice is no error
        request = DeleteTaskPushNotificationConfigRequest(task_id=task.id, id=made.id)
        await client.delete_task_push_notification_config(request)
    listed = await client.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=task.id))
    assert list(listed.configs) == []


async def test_http_json_binding_and_keys(gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient) -> None:
    one, _ = gateways
    rest = await client_of(one.url, http, supported_protocol_bindings=["HTTP+JSON"])
    events = [event async for event in rest.send_message(say("hello there"))]
    assert status_of(events[-1]).state == TaskState.TASK_STATE_COMPLETED
    task_id = events[0].task.id
    assert (await rest.get_task(GetTaskRequest(id=task_id))).status.state == TaskState.TASK_STATE_COMPLETED
    async with httpx.AsyncClient(headers={"Authorization": "Bearer wrong"}, timeout=30) as wrong:
        refused = await client_of(one.url, wrong)  # the card is public
        with pytest.raises(A2AClientError, match="401"):
            await refused.get_task(GetTaskRequest(id=task_id))
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30) as beta:
        other_tenant = await client_of(one.url, beta)
        with pytest.raises(TaskNotFoundError):
            await other_tenant.get_task(GetTaskRequest(id=task_id))
    card = (await http.get(f"{one.url}/a2a/described/.well-known/agent-card.json")).json()
    assert card["description"] == "Adds two numbers."
    assert [i["protocolBinding"] for i in card["supportedInterfaces"]] == ["JSONRPC", "HTTP+JSON"]
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    assert card["capabilities"]["extensions"][0]["uri"] == RESUME_EXTENSION
    assert card["capabilities"]["pushNotifications"] is True


async def test_a_gateway_that_stops_mid_stream_cuts_it_and_the_client_can_tell(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient
) -> None:
    one, two = gateways
    client = await client_of(one.url, http, "stepping")
    seen: list[StreamResponse] = []
    async for event in client.send_message(say("count")):
        seen.append(event)
        if event.HasField("artifact_update") and len(seen) == 5:
            await one.stop()  # a deploy: the stream ends, cleanly, before the task does
    assert status_of(seen[-1]).state not in FINAL_STATES  # the last event is no end: a cut
    last = resume(seen[-1])["eventId"]
    other = await client_of(two.url, http, "stepping")
    resumed = ClientCallContext(service_parameters={"Last-Event-ID": last})
    request = SubscribeToTaskRequest(id=seen[0].task.id)
    rest = [event async for event in other.subscribe(request, context=resumed)]
    assert [generation(e) for e in rest[1:]] == list(range(generation(seen[-1]) + 1, generation(rest[-1]) + 1))
    assert text_of(seen + rest[1:]) == own_answer(42)


async def test_an_agent_s_arguments_as_a_data_part_and_a_push_config_given_with_the_message(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient, receiver: Receiver
) -> None:
    one, _ = gateways
    client = await client_of(one.url, http, "described", streaming=False)
    arguments = Value()
    arguments.struct_value.update({"a": 2, "b": 3})
    request = SendMessageRequest(message=Message(message_id="m-add", role=Role.ROLE_USER, parts=[Part(data=arguments)]))
    request.configuration.task_push_notification_config.url = receiver.url + HOOKS + "inline"
    task = [event async for event in client.send_message(request)][0].task
    assert (task.status.state, task.artifacts[0].parts[0].text) == (TaskState.TASK_STATE_COMPLETED, "5")

    def delivered() -> dict[str, Any]:
        assert receiver.accepted(), "no delivery yet"
        body: dict[str, Any] = json.loads(receiver.accepted()[0].body)
        return body

    pushed = (await eventually(delivered))["task"]
    assert (pushed["id"], pushed["status"]["state"]) == (task.id, "TASK_STATE_COMPLETED")
    assert pushed["artifacts"][0]["parts"] == [{"text": "5"}]
    wrong = say("not arguments")
    with pytest.raises(InvalidParamsError, match="takes arguments"):
        [event async for event in client.send_message(wrong)]


async def test_a_blocking_send_holds_a_stream_slot_while_it_waits(
    start_gateway: Any, start_worker: Any, http: httpx.AsyncClient
) -> None:
    """A `SendMessage` that waits for its task holds one of the tenant's stream slots, as a stream
    does, taken before its run is queued: with none left, a send is refused and starts nothing."""
    settings = {**SETTINGS, "max_streams_per_tenant": 1}
    gateway: Gateway = await start_gateway(**settings)
    await start_worker(**settings)
    blocking = await client_of(gateway.url, http, "slow", streaming=False)

    async def send() -> list[StreamResponse]:
        return [event async for event in blocking.send_message(say("search"))]

    waiting = asyncio.create_task(send())
    slots = gateway.app.state.stream_slots
    await eventually(lambda: slots._held, what="the waiting send's slot")

    async def tasks() -> int:
        return len((await blocking.list_tasks(ListTasksRequest())).tasks)

    async def its_task_made() -> None:  # its slot is taken before its task is made
        assert await tasks() == 1

    await eventually(its_task_made, what="the waiting send's task")
    with pytest.raises(InternalError, match="1 streams open already") as refused:  # A2A has no 429
        [event async for event in blocking.send_message(say("another"))]
    limit = refused.value.data or {}
    assert limit["type"] == "too_many_streams" and limit["retryAfter"] >= 1, limit  # as MCP says it
    body = {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "another"}]}}
    rest = await http.post(f"{gateway.url}/a2a/slow/message:send", json=body, headers={"A2A-Version": "1.0"})
    assert (rest.status_code, rest.json()["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")  # HTTP+JSON: a 429
    assert int(rest.headers["Retry-After"]) == limit["retryAfter"]
    assert await tasks() == 1  # the refused sends made no task
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await eventually(lambda: not slots._held, what="the slot given back when the send's client left")


async def test_a_push_refused_by_one_config_is_retried_to_it_alone(
    start_gateway: Any, start_worker: Any, http: httpx.AsyncClient
) -> None:
    """An event goes to each of its task's push configs: one that refused it gets it again, and one
    that took it does not (the deliverer remembers who took it)."""
    async with Receiver(refuse_first=1) as receiver:  # the first post of each event refused, whichever config
        settings = {**SETTINGS, "webhook_allowed_urls": [receiver.url + HOOKS]}
        gateway: Gateway = await start_gateway(**settings)
        await start_worker(**settings)
        client = await client_of(gateway.url, http, "slow", streaming=False, polling=True)
        task = [e async for e in client.send_message(say("search"))][0].task
        for path in ("a", "b"):
            config = TaskPushNotificationConfig(task_id=task.id, url=receiver.url + HOOKS + path)
            await client.create_task_push_notification_config(config)
        await client.cancel_task(CancelTaskRequest(id=task.id))

        def accepted_by_both() -> list[str]:
            paths = sorted(delivery.path for delivery in receiver.accepted())
            assert len(paths) >= 2, paths
            return paths

        paths = await eventually(accepted_by_both)
        assert paths == [HOOKS + "a", HOOKS + "b"]  # each took it once
        assert len(receiver.deliveries) == 3  # and only the one that refused it got it again
        state = gateway.app.state
        await state.runs.delete_session(await state.store.get_session(task.context_id))
        assert not await state.store.redis.exists(state.runs.keys.task_push(task.context_id))  # nor its credentials


async def test_a_delivery_that_raises_fails_to_its_own_config_alone(
    start_gateway: Any, start_worker: Any, http: httpx.AsyncClient
) -> None:
    """One config's delivery raising an error that is not httpx's (here a token no header can carry,
    as a config stored before such tokens were refused) fails that delivery alone: the task's other
    config takes the event once (it was posted it again each time the failed pass's claim lapsed)."""
    async with Receiver() as receiver:
        # Retried for 10 s: longer than a pass's claim of 6 s (6 timeouts), which a pass that raised left to lapse.
        settings = {**SETTINGS, "webhook_allowed_urls": [receiver.url + HOOKS], "webhook_retry_seconds": 10}
        gateway: Gateway = await start_gateway(**settings)
        await start_worker(**settings, webhook_timeout_seconds=1)
        client = await client_of(gateway.url, http, "slow", streaming=False, polling=True)
        task = [e async for e in client.send_message(say("search"))][0].task
        await client.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=task.id, url=receiver.url + HOOKS + "good")
        )
        state = gateway.app.state
        pushes = PushConfigs(state.store.redis, state.runs.keys, gateway.settings.session_ttl_seconds)
        unsendable = PushConfig(id="bad", url=receiver.url + HOOKS + "bad", token="jeton-à-moi")
        await pushes.put(task.context_id, task.id.removeprefix(task.context_id), unsendable)
        gave_up = metrics.WEBHOOK_DELIVERIES.labels("gave_up")._value.get()
        await client.cancel_task(CancelTaskRequest(id=task.id))
        await eventually(
            lambda: metrics.WEBHOOK_DELIVERIES.labels("gave_up")._value.get() > gave_up,
            within=30,
            what="the event given up for the config that cannot take it, once its retries ran out",
        )
    assert [delivery.path for delivery in receiver.deliveries] == [HOOKS + "good"]


async def test_a_message_s_metadata_user_is_the_end_user_its_run_counts_against(
    gateways: tuple[Gateway, Gateway], http: httpx.AsyncClient
) -> None:
    # docs/api.md, Fair admission: the per-user cap counts the runs of the user the metadata names.
    one, _ = gateways
    client = await client_of(one.url, http)
    request = say("hello there")
    request.message.metadata.update({"user": "ann@example.com"})
    events = [event async for event in client.send_message(request)]
    task_id = events[0].task.id
    session = await one.app.state.store.get_session(events[0].task.context_id)
    assert session.user == "ann@example.com" and task_id
