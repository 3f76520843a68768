"""The Responses API's WebSocket mode on tokentail, driven by the official `openai` SDK's
`client.responses.connect()` and its lanes (`AsyncResponsesWebSocketSession`), against real gateways
(uvicorn on loopback), a real worker and a real Redis.

Every event is checked against the SDK's union of WebSocket server events with validation (the SDK
builds its models without validating), and compared with the same response's HTTP stream."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI
from openai.lib.responses_websocket import (
    AsyncResponsesWebSocketLane,
    AsyncResponsesWebSocketSession,
    ResponsesWebSocketError,
    ResponsesWebSocketLimits,
)
from openai.resources.responses.responses import AsyncResponsesConnection
from openai.types.responses.responses_server_event import ResponsesServerEvent
from pydantic import SecretStr, TypeAdapter
from redis.asyncio import Redis

from tests.fixtures.stack import Gateway
from tests.integration.test_openai_responses import run_of
from tests.support.gates import Gates
from tests.support.waiting import eventually
from tokentail.gateway.protocols.responses.socket import MAX_WAITING
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore

pytestmark = pytest.mark.responses


KEY = "acme-key-0123456789abcdef"
AUTH = {"api_keys": SecretStr(f"acme:{KEY}"), "secret": SecretStr("s" * 40)}
AGENTS = {
    "careful": "tests.agents.asking_agent:CAREFUL",
    "held": "tests.support.gates:held",  # waits at its gate (tests/support/gates.py) until the test releases it
}
FAST = {"params": {"tokens": 30, "tokens_per_second": 0}}
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}
LIMITS = ResponsesWebSocketLimits(
    max_lanes=8, max_events_per_lane=4096, max_events=8192, max_bytes_per_lane=1 << 24, max_bytes=1 << 25
)

EVENT = TypeAdapter[Any](ResponsesServerEvent)

_clients: list[AsyncOpenAI] = []


def sdk(gateway: Gateway, key: str = KEY) -> AsyncOpenAI:
    """The SDK as an application makes it: the gateway is its base URL, the socket's too."""
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20)
    _clients.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _clients:
        await _clients.pop().close()


@pytest.fixture
async def two_gateways(start_gateway: Callable[..., Any], start_worker: Callable[..., Any]) -> list[Gateway]:
    await start_worker(agents=AGENTS, **AUTH)
    return [await start_gateway(agents=AGENTS, **AUTH) for _ in range(2)]


def create(**fields: Any) -> Any:
    """A `response.create` message: the body of POST /v1/responses (with tokentail's `params`, which
    the SDK's typed dict does not name)."""
    return {"type": "response.create", **fields}


def checked(event: Any) -> Any:
    EVENT.validate_python(event.to_dict())
    return event


async def one_response(lane: AsyncResponsesWebSocketLane, **fields: Any) -> list[Any]:
    """Send a create on the lane and read its events to the end."""
    await lane.send(create(**fields))
    events = [checked(await lane.recv())]
    while events[-1].type not in TERMINAL | {"error"}:
        events.append(checked(await lane.recv()))
    return events


def as_retrieved(event: Any) -> dict[str, Any]:
    """The event as a retrieve of its response streams it: without the lane, nor `background`,
    which only the request that created the response knows (as over HTTP)."""
    dumped: dict[str, Any] = event.to_dict()
    dumped.pop("stream_id", None)
    if "response" in dumped:
        dumped["response"].pop("background", None)
    return dumped


async def test_responses_on_two_lanes_are_their_http_streams_and_go_on_in_turn(two_gateways: list[Gateway]) -> None:
    first, second = two_gateways
    async with (
        sdk(first).responses.connect() as connection,
        AsyncResponsesWebSocketSession(connection, limits=LIMITS) as session,
    ):
        a, b = session.lane("a"), session.lane("b")
        one, two = await asyncio.gather(
            one_response(a, model="scripted", input="hello over a socket", **FAST),
            one_response(b, model="scripted", input="hello on another lane", **FAST),
        )
        assert {e.stream_id for e in one} == {"a"} and {e.stream_id for e in two} == {"b"}
        for events in (one, two):
            assert [e.sequence_number for e in events] == list(range(len(events)))
            assert events[-1].type == "response.completed"
            # The same events as the response's HTTP stream, from another gateway.
            response_id = events[0].response.id
            streamed = [e async for e in await sdk(second).responses.retrieve(response_id, stream=True)]
            assert [as_retrieved(e) for e in events] == [e.to_dict() for e in streamed]
        final = await a.get_final_response()
        assert final.status == "completed" and final.output_text and final.id == one[0].response.id

        # The lane's next response goes on in the same conversation.
        follow = await one_response(a, model="scripted", input="and again", previous_response_id=final.id, **FAST)
        later = await a.get_final_response()
        assert follow[-1].type == "response.completed" and later.previous_response_id == final.id
        assert later.id.startswith(final.id[: len("resp_s_") + 22])  # the same session


async def test_an_approval_is_asked_and_answered_on_the_socket(two_gateways: list[Gateway]) -> None:
    async with (
        sdk(two_gateways[0]).responses.connect() as connection,
        AsyncResponsesWebSocketSession(connection, limits=LIMITS) as session,
    ):
        lane = session.lane("tools")
        await lane.send(create(model="careful", input="What is 6 * 7?"))
        asked = await lane.get_final_response()
        request = asked.output[-1]
        assert asked.status == "completed" and request.type == "mcp_approval_request"
        answer = [{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}]
        await lane.send(create(model="careful", input=answer, previous_response_id=asked.id))
        answered = await lane.get_final_response()
        assert answered.status == "completed" and "42" in answered.output_text
        assert answered.previous_response_id == asked.id


async def test_bad_messages_are_answered_with_error_events_and_the_socket_stays_open(
    two_gateways: list[Gateway],
) -> None:
    async with sdk(two_gateways[0]).responses.connect() as connection:
        sent: list[str] = [
            "not json",
            json.dumps({"type": "response.cancel"}),
            json.dumps({"type": "response.create", "model": "scripted", "input": "x", "stream_id": "no spaces"}),
            json.dumps({"type": "response.create", "model": "scripted", "input": "x", "generate": False}),
            json.dumps({"type": "response.create", "input": "no model", "stream_id": "l1"}),
            json.dumps({"type": "response.create", "model": "nobody", "input": "x", "stream_id": "l2"}),
            json.dumps(
                {"type": "response.create", "model": "scripted", "input": "x", "previous_response_id": "resp_nope"}
            ),
            json.dumps({"type": "response.create", "model": "scripted", "input": "x" * 2_000_000}),
        ]
        for text in sent:
            await connection.send_raw(text)
        errors = [checked(await connection.recv()) for _ in sent]
        assert all(e.type == "error" for e in errors)
        # A create is refused in its lane, which may answer after a later message's refusal.
        assert sorted((e.status, e.error.code, e.stream_id or "") for e in errors) == sorted(
            [
                (400, "invalid_json", ""),
                (400, "unsupported_event", ""),
                (400, "invalid_stream_id", ""),
                (400, "unsupported_parameter", ""),
                (422, "validation_error", "l1"),
                (422, "validation_error", "l2"),
                (404, "session_not_found", ""),
                (413, "input_too_large", ""),
            ]
        )
        assert any(e.stream_id == "l1" and "model" in e.error.message for e in errors)
        # Still open: a good create is answered.
        await connection.send(create(model="scripted", input="still here", **FAST))
        events = [checked(await connection.recv())]
        while events[-1].type not in TERMINAL:
            events.append(checked(await connection.recv()))
        assert events[-1].type == "response.completed"


async def test_a_wrong_key_is_refused_at_the_upgrade_as_the_http_api_refuses_it(two_gateways: list[Gateway]) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with sdk(two_gateways[0], key="not-a-key-0123456789").responses.connect():
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["type"] == "unauthorized"


@pytest.mark.usefixtures("gates")
async def test_creates_past_the_socket_s_bound_are_refused_and_its_close_cancels_what_it_started(
    two_gateways: list[Gateway],
) -> None:
    first, second = two_gateways
    connection: AsyncResponsesConnection
    async with sdk(first).responses.connect() as connection:
        # The default lane: one response at a time (held at its gate), the others wait in it, up to the bound.
        for i in range(MAX_WAITING + 2):
            await connection.send_raw(json.dumps({"type": "response.create", "model": "held", "input": f"n{i}"}))
        seen: list[Any] = []
        while not any(e.type == "error" for e in seen) or not any(e.type == "response.output_text.delta" for e in seen):
            seen.append(checked(await connection.recv()))
        refusal = next(e for e in seen if e.type == "error")
        assert (refusal.status, refusal.error.code) == (429, "too_many_requests")
        response_id = next(e for e in seen if e.type == "response.created").response.id
    # The socket closed mid-response: that response (not background) is cancelled, as over HTTP.
    client = sdk(second)

    async def cancelled() -> bool:
        return (await client.responses.retrieve(response_id)).status == "cancelled"

    await eventually(cancelled)
    listed = await client.responses.retrieve(response_id)
    assert listed.status == "cancelled"


async def test_a_background_response_outlives_its_socket_and_resumes_on_another_gateway(
    two_gateways: list[Gateway], gates: Gates
) -> None:
    first, second = two_gateways
    async with (
        sdk(first).responses.connect() as connection,
        AsyncResponsesWebSocketSession(connection, limits=LIMITS) as session,
    ):
        lane = session.lane("long")
        await lane.send(create(model="held", input="go on", background=True))
        seen = [checked(await lane.recv())]
        while seen[-1].type != "response.output_text.delta":
            seen.append(checked(await lane.recv()))
    # The socket dropped mid-answer (the run waits at its gate); the response goes on, and is read on
    # from where it was.
    response_id = seen[0].response.id
    assert (await sdk(second).responses.retrieve(response_id)).status == "in_progress"
    gates.release(run_of(response_id))
    resumed = await sdk(second).responses.retrieve(response_id, stream=True, starting_after=seen[-1].sequence_number)
    seen += [e async for e in resumed]
    assert [e.sequence_number for e in seen] == list(range(len(seen)))  # nothing lost, nothing twice
    assert seen[-1].type == "response.completed"
    final = seen[-1].response
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert final.status == "completed" and text == final.output_text


async def test_a_stopping_gateway_closes_the_socket_1012_and_the_response_goes_on(
    two_gateways: list[Gateway], gates: Gates
) -> None:
    first, second = two_gateways
    seen: list[Any] = []
    stopping: list[asyncio.Task[None]] = []
    with pytest.raises(websockets.ConnectionClosedError) as cut:  # noqa: PT012 (the events before the cut are kept)
        async with (
            sdk(first).responses.connect() as connection,
            AsyncResponsesWebSocketSession(connection, limits=LIMITS) as session,
        ):
            lane = session.lane("deploy")
            await lane.send(create(model="held", input="a deploy"))
            while True:
                seen.append(checked(await lane.recv()))
                if seen[-1].type == "response.output_text.delta" and not stopping:
                    stopping.append(asyncio.create_task(first.stop()))  # the run waits at its gate meanwhile
    assert cut.value.rcvd is not None and cut.value.rcvd.code == 1012  # the SDK may reconnect (on_reconnecting)
    await stopping[0]
    response_id = seen[0].response.id
    assert (await sdk(second).responses.retrieve(response_id)).status == "in_progress"  # not cancelled
    gates.release(run_of(response_id))
    resumed = await sdk(second).responses.retrieve(response_id, stream=True, starting_after=seen[-1].sequence_number)
    seen += [e async for e in resumed]
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    assert seen[-1].type == "response.completed"


async def test_each_response_in_flight_holds_a_stream_slot_taken_before_its_run_is_queued(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    await start_worker(agents=AGENTS, **AUTH)
    gateway = await start_gateway(max_streams_per_tenant=1, agents=AGENTS, **AUTH)
    async with (
        sdk(gateway).responses.connect() as connection,
        AsyncResponsesWebSocketSession(connection, limits=LIMITS) as session,
    ):
        a, b = session.lane("a"), session.lane("b")
        await a.send(create(model="held", input="holds the slot"))  # until its gate is released
        created = await a.recv()
        assert created.type == "response.created"
        refused = await one_response(b, model="scripted", input="one too many", **FAST)
        assert [(e.type, e.status, e.error.code) for e in refused] == [("error", 429, "too_many_streams")]
        with pytest.raises(ResponsesWebSocketError):
            await b.get_final_response()
        # Nothing was started for it; once `a` ends, its slot is given back and `b` is served.
        gates.release(run_of(created.response.id))
        assert (await a.get_final_response()).status == "completed"
        assert (await one_response(b, model="scripted", input="now", **FAST))[-1].type == "response.completed"


@pytest.mark.usefixtures("gates")
async def test_a_create_sent_just_before_its_socket_closes_leaves_no_run_going(
    two_gateways: list[Gateway], redis: Redis, store: SessionStore, settings: Settings
) -> None:
    """The close may come before the create started (nothing is started then), while it queues its
    run (cancelled once queued), or while its response streams (cancelled: it waits at its gate, never
    released, so that it cannot end first)."""
    url = two_gateways[0].url.replace("http://", "ws://") + "/v1/responses"
    for delay in (0, 0.001, 0.002, 0.005, 0.01, 0.05, 0.2):
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as socket:
            await socket.send(json.dumps(create(model="held", input="and gone")))
            await asyncio.sleep(delay)

    async def none_going() -> bool:
        keys = [key.decode() async for key in redis.scan_iter(f"{settings.key_prefix}:*:meta")]
        sessions = [await store.get_session(key.split("{")[1].split("}")[0]) for key in keys]
        return len(sessions) >= 2 and all(session.runs[0].status == "cancelled" for session in sessions)

    await eventually(none_going)
