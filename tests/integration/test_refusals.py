"""A refused request creates nothing, on every protocol: what can refuse it (validation, the run
budget, stream slots, push configs, size) is checked before any session, run, fork, push config or
index entry is written. Each test spends its tenant's runs per minute, then sends what that budget
refuses (a new conversation, a follow-up, a branch) and compares what Redis holds before and after,
key by key with its size: a new key, a new field of a session's record or one more event is a run
or a session made for a refusal. No worker runs: a run a test needs ended is ended by hand."""

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
from a2a.client import A2AClientError, ClientConfig, create_client
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest
from a2a.utils.errors import InternalError, InvalidParamsError, PushNotificationNotSupportedError
from google.protobuf.json_format import ParseDict  # type: ignore[import-untyped]
from mcp.shared.exceptions import MCPError
from redis.asyncio import Redis

from tests.clients.mcp_client import connect
from tests.fixtures.stack import Gateway
from tests.support.sessions import completion
from tests.support.writes import AllWrites
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.response_ids import parse_response_id
from tokentail.worker.writes.run_writes import RunLease

# The budget's minute held still (tests/fixtures/limits_clock.py): a test that crossed into the next
# minute found its budget fresh, and its "refused" chat request streamed a run no worker takes.
pytestmark = pytest.mark.usefixtures("limits_clock")

HOOKS = "http://127.0.0.1:9/a2a-hooks/"  # allowed, never posted to: no run ends here
# What a refusal may change: the tenant's counter of runs per minute, and its stream slots.
LIMIT_KEYS = re.compile(r":tenant:\{[^}]*\}:(runs:\d+|streams)$")
SIZE = {"hash": "hlen", "stream": "xlen", "zset": "zcard", "list": "llen", "set": "scard", "string": "strlen"}


async def held(redis: Redis, prefix: str) -> dict[str, int]:
    """Every key of the test's prefix but the limits' counters, with its size (fields, events, members)."""
    found = {}
    async for raw in redis.scan_iter(f"{prefix}:*"):
        key = raw.decode()
        if not LIMIT_KEYS.search(key):
            kind = (await redis.type(key)).decode()
            found[key] = await getattr(redis, SIZE[kind])(key)
    return found


async def end_run(runs: AllWrites, session_id: str, run_id: str) -> None:
    """End a queued run as a worker would: started, then completed."""
    assert await runs.start_run(session_id, run_id, run_id, token="lease") is not None
    await RunLease(runs, session_id, run_id, "lease").append([], ending=completion(run_id, "done"))


async def refused_429(response: httpx2.Response, kind: str = "rate_limited") -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["type"] == kind and int(response.headers["Retry-After"]) >= 1


@pytest.fixture
async def http(start_gateway: Any, request: pytest.FixtureRequest) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of a gateway whose tenant may start `request.param` runs a minute (1 unless parametrized)."""
    gateway: Gateway = await start_gateway(runs_per_minute=getattr(request, "param", 1), webhook_allowed_urls=[HOOKS])
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        yield client


async def test_rest_refused_for_the_run_budget_makes_no_session_and_queues_no_run(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    made = (await http.post("/v1/sessions", json={"input": "the minute's one run"})).json()
    before = await held(redis, settings.key_prefix)
    for _ in range(3):
        await refused_429(await http.post("/v1/sessions", json={"input": "another"}))
        await refused_429(await http.post("/v1/sessions", json={}))  # a session alone counts too
        follow_up = {"input": "more", "multitask": "enqueue"}
        await refused_429(await http.post(f"/v1/sessions/{made['session_id']}/runs", json=follow_up))
    assert await held(redis, settings.key_prefix) == before


def ai_sdk(chat_id: str, said: list[tuple[str, str, str]]) -> tuple[str, dict[str, Any]]:
    messages = [{"id": id_, "role": role, "parts": [{"type": "text", "text": text}]} for id_, role, text in said]
    return "/v1/ai-sdk/chat", {"id": chat_id, "messages": messages, "trigger": "submit-message"}


def ag_ui(chat_id: str, said: list[tuple[str, str, str]]) -> tuple[str, dict[str, Any]]:
    messages = [{"id": id_, "role": role, "content": text} for id_, role, text in said]
    body = {"threadId": chat_id, "runId": "r", "state": {}, "messages": messages, "tools": [], "context": []}
    return "/v1/ag-ui", {**body, "forwardedProps": {}}


@pytest.mark.ai_sdk
@pytest.mark.ag_ui
@pytest.mark.parametrize("protocol", [ai_sdk, ag_ui], ids=["ai-sdk", "ag-ui"])
async def test_a_chat_message_refused_for_the_run_budget_makes_no_session_fork_or_run(
    protocol: Any, http: httpx2.AsyncClient, redis: Redis, runs: AllWrites, settings: Settings
) -> None:
    made = (await http.post("/v1/sessions", json={"chat_id": "chat", "input": "hello"})).json()
    await end_run(runs, made["session_id"], made["run_id"])  # the chat's one turn
    answered = [("u1", "user", "hello"), (made["run_id"], "assistant", "done")]
    before = await held(redis, settings.key_prefix)
    for said in (
        [("u1", "user", "hello")],  # a new chat's first message
        [*answered, ("u2", "user", "and then?")],  # the chat's next turn
        [("u1", "user", "hello, edited"), (made["run_id"], "assistant", "done"), ("u2", "user", "then?")],  # a branch
    ):
        chat_id = "new-chat" if len(said) == 1 else "chat"
        url, body = protocol(chat_id, said)
        await refused_429(await http.post(url, json=body))
    assert await held(redis, settings.key_prefix) == before


@pytest.mark.responses
@pytest.mark.parametrize("http", [2], indirect=True)
async def test_a_responses_request_refused_for_the_run_budget_makes_no_conversation_fork_or_run(
    http: httpx2.AsyncClient, redis: Redis, runs: AllWrites, settings: Settings
) -> None:
    async def respond(**body: Any) -> httpx2.Response:
        return await http.post("/v1/responses", json={"model": "default", "background": True, **body})

    async def answered(**body: Any) -> str:
        made = (await respond(**body)).json()["id"]
        session_id, run_id, _ = parse_response_id(made) or ("", "", 0)
        await end_run(runs, session_id, run_id)
        return str(made)

    first = await answered(input="one")
    second = await answered(input="two", previous_response_id=first)
    before = await held(redis, settings.key_prefix)
    await refused_429(await respond(input="a new conversation"))
    await refused_429(await respond(input="next", previous_response_id=second))
    await refused_429(await respond(input="a branch", previous_response_id=first))  # before the latest turn
    assert await held(redis, settings.key_prefix) == before


@pytest.mark.mcp
async def test_an_mcp_task_refused_for_the_run_budget_makes_no_session(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    assert (await http.post("/v1/sessions", json={"input": "the minute's one run"})).status_code == 201
    before = await held(redis, settings.key_prefix)
    async with connect(str(http.base_url).rstrip("/"), tasks=True) as client:
        for _ in range(3):
            with pytest.raises(MCPError) as refused:
                await client.call_tool("assistant", {"input": "hi"})
            assert refused.value.error.code == -32029 and refused.value.error.data["type"] == "rate_limited"
    assert await held(redis, settings.key_prefix) == before


def send(text: str, context_id: str = "", push: bool = False) -> SendMessageRequest:
    message = Message(message_id="m", role=Role.ROLE_USER, parts=[Part(text=text)], context_id=context_id)
    request = SendMessageRequest(message=message)
    request.configuration.return_immediately = True
    if push:
        request.configuration.task_push_notification_config.url = HOOKS + "task"
    return request


@pytest.mark.a2a
async def test_an_a2a_send_refused_for_the_run_budget_makes_nothing_with_or_without_a_push_config(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    made = (await http.post("/v1/sessions", json={"input": "the minute's one run"})).json()
    before = await held(redis, settings.key_prefix)
    async with httpx.AsyncClient(timeout=30) as plain:
        client = await create_client(str(http.base_url), ClientConfig(httpx_client=plain, streaming=False))
        for request in (send("hi"), send("hi", push=True), send("hi", made["session_id"], push=True)) * 2:
            with pytest.raises(InternalError) as refused:  # JSON-RPC: A2A has no error for a limit
                [event async for event in client.send_message(request)]
            limit = refused.value.data or {}  # the kind and when, as MCP's -32029 says them
            assert limit["type"] == "rate_limited" and limit["retryAfter"] >= 1, limit
    assert await held(redis, settings.key_prefix) == before


@pytest.mark.a2a
async def test_an_a2a_limit_is_429_with_retry_after_on_the_http_json_binding(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    assert (await http.post("/v1/sessions", json={"input": "the minute's one run"})).status_code == 201
    before = await held(redis, settings.key_prefix)
    body = {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}
    for path in ("message:send", "message:stream"):
        answer = await http.post(f"/a2a/assistant/{path}", json=body, headers={"A2A-Version": "1.0"})
        assert answer.status_code == 429, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        error = answer.json()["error"]  # google.rpc.Status, as the binding writes every error
        assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
        assert error["details"][0]["metadata"]["type"] == "rate_limited"
    async with httpx.AsyncClient(timeout=30) as plain:
        config = ClientConfig(httpx_client=plain, streaming=False, supported_protocol_bindings=["HTTP+JSON"])
        client = await create_client(str(http.base_url), config)
        with pytest.raises(A2AClientError, match="429"):  # a2a-sdk has no error of its own for it
            [event async for event in client.send_message(send("hi"))]
    assert await held(redis, settings.key_prefix) == before


NOT_ALLOWED = (InvalidParamsError, "INVALID_ARGUMENT")


@pytest.mark.a2a
@pytest.mark.parametrize(
    ("allowed", "push", "why", "refusal"),
    [
        ([HOOKS], {"url": "http://169.254.169.254/latest"}, "not under any URL the operator allows", NOT_ALLOWED),
        ([], {"url": HOOKS}, "push notifications are off", (PushNotificationNotSupportedError, "FAILED_PRECONDITION")),
        ([HOOKS], {"url": HOOKS, "token": "tökén"}, "token: printable ASCII", NOT_ALLOWED),
        ([HOOKS], {"url": HOOKS, "token": "a\r\nX-Injected: 1"}, "token: printable ASCII", NOT_ALLOWED),
        (
            [HOOKS],
            {"url": HOOKS, "authentication": {"scheme": "Bearer", "credentials": "sécret"}},
            "credentials",
            NOT_ALLOWED,
        ),
        ([HOOKS], {"url": HOOKS, "authentication": {"scheme": "Bear er", "credentials": "x"}}, "scheme", NOT_ALLOWED),
    ],
    ids=["url-not-allowed", "push-off", "token-not-ascii", "token-control", "credentials-not-ascii", "scheme"],
)
async def test_an_a2a_send_refused_for_its_push_config_queues_nothing(
    allowed: list[str],
    push: dict[str, Any],
    why: str,
    refusal: Any,
    start_gateway: Any,
    redis: Redis,
    settings: Settings,
) -> None:
    """The config is checked before the task's run is queued: a refused send starts nothing (it did
    start its run, then answered InvalidParams), on both bindings; and a config that could never be
    delivered (its token or credentials not header values) is refused when it is set."""
    gateway: Gateway = await start_gateway(webhook_allowed_urls=allowed)
    before = await held(redis, settings.key_prefix)
    body = {
        "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
        "configuration": {"returnImmediately": True, "taskPushNotificationConfig": push},
    }
    error, status = refusal
    async with httpx.AsyncClient(timeout=30) as plain:
        client = await create_client(gateway.url, ClientConfig(httpx_client=plain, streaming=False))
        with pytest.raises(error, match=why):
            [event async for event in client.send_message(ParseDict(body, SendMessageRequest()))]
        rest = await plain.post(f"{gateway.url}/a2a/assistant/message:send", json=body, headers={"A2A-Version": "1.0"})
        assert rest.status_code == 400 and rest.json()["error"]["status"] == status
    assert await held(redis, settings.key_prefix) == before
