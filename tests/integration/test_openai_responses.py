"""OpenAI's Responses API on tokentail, driven by the official `openai` SDK (the version the project
pins) against real gateways (uvicorn on loopback), a real worker and a real Redis.

Every event is checked against the SDK's own types with validation (the SDK itself builds its models
without validating), so a field the SDK requires and tokentail left out fails here."""

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import SecretStr, TypeAdapter
from redis.asyncio import Redis

from tests.fixtures.stack import Gateway
from tests.servers.webhook_receiver import Receiver
from tests.support.gates import Gates
from tests.support.sessions import completion
from tests.support.waiting import eventually
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_run_id
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.runs import Asked
from tokentail.shared.vocabulary.events import MessageDelta
from tokentail.shared.vocabulary.records import Question, RunRecord
from tokentail.shared.vocabulary.response_ids import parse_response_id
from tokentail.worker.writes.run_writes import RunLease

pytestmark = pytest.mark.responses


KEY = "acme-key-0123456789abcdef"
OTHER_KEY = "beta-key-0123456789abcdef"
AUTH = {"api_keys": SecretStr(f"acme:{KEY},beta:{OTHER_KEY}"), "secret": SecretStr("s" * 40)}
AGENTS = {
    "careful": "tests.agents.asking_agent:CAREFUL",
    "two": "tests.agents.asking_agent:two_questions",
    "parallel": "tests.agents.asking_agent:parallel_approvals",
    "held": "tests.support.gates:held",  # waits at its gate (tests/support/gates.py) until the test releases it
}
SLOW = {"params": {"tokens": 120, "tokens_per_second": 40}}
FAST = {"params": {"tokens": 30, "tokens_per_second": 0}}

EVENT = TypeAdapter[Any](ResponseStreamEvent)


_clients: list[AsyncOpenAI] = []


def sdk(gateway: Gateway, key: str = KEY) -> AsyncOpenAI:
    """The SDK as an application makes it, with the gateway as its base URL (closed after the test)."""
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20)
    _clients.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _clients:
        await _clients.pop().close()


def checked(event: Any) -> Any:
    """The event, validated against the SDK's union of stream events (strictly: every required field)."""
    EVENT.validate_python(event.to_dict())
    return event


def run_of(response_id: str) -> str:
    """The id of the run a response is."""
    parsed = parse_response_id(response_id)
    assert parsed is not None, response_id
    return parsed[1]


def text_of(events: list[Any], final: Response) -> str:
    """The text of the deltas of the items the final response kept (a dead attempt's are left out)."""
    kept = {item.id for item in final.output if item.type == "message"}
    return "".join(e.delta for e in events if e.type == "response.output_text.delta" and e.item_id in kept)


@pytest.fixture
async def two_gateways(start_gateway: Callable[..., Any], start_worker: Callable[..., Any]) -> list[Gateway]:
    await start_worker(agents=AGENTS, **AUTH)
    return [await start_gateway(agents=AGENTS, **AUTH) for _ in range(2)]


async def test_a_background_stream_cut_mid_answer_resumes_on_another_gateway(two_gateways: list[Gateway]) -> None:
    first, second = two_gateways
    seen: list[Any] = []
    stream = await sdk(first).responses.create(
        model="scripted", input="Tell me about streams", background=True, stream=True, extra_body=SLOW
    )
    async for event in stream:
        seen.append(checked(event))
        if sum(e.type == "response.output_text.delta" for e in seen) == 10:
            break
    await stream.close()  # the connection drops mid-answer; a background run goes on
    response_id = seen[0].response.id
    assert [e.type for e in seen[:3]] == ["response.created", "response.queued", "response.in_progress"]

    resumed = await sdk(second).responses.retrieve(response_id, stream=True, starting_after=seen[-1].sequence_number)
    async for event in resumed:
        seen.append(checked(event))
    assert [e.sequence_number for e in seen] == list(range(len(seen)))  # no gap, no duplicate
    assert seen[-1].type == "response.completed"
    final = seen[-1].response
    assert final.status == "completed" and final.output_text
    assert text_of(seen, final) == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0

    # The SDK's own helper replays from the first event and drops what it has: the same response.
    async with sdk(second).responses.stream(response_id=response_id, starting_after=5) as helper:
        replayed = [event async for event in helper]  # the helper's own parsed events
        assert (await helper.get_final_response()).output_text == final.output_text
    assert [e.sequence_number for e in replayed] == list(range(6, len(seen)))

    # The response is over: the second gateway kept what it sent from 6 on, and answers a later resume
    # from that copy; the first, which kept nothing, renders it again. Both send the same events.
    again = [e async for e in await sdk(second).responses.retrieve(response_id, stream=True, starting_after=20)]
    anew = [e async for e in await sdk(first).responses.retrieve(response_id, stream=True, starting_after=20)]
    assert [e.model_dump() for e in again] == [e.model_dump() for e in anew]
    assert [e.sequence_number for e in again] == list(range(21, len(seen)))
    assert text_of(seen[:21] + again, final) == final.output_text
    # From 5: the second kept it from 0 on (the SDK's helper read it all), the first only from 21 on.
    path = f"/v1/responses/{response_id}?stream=true&starting_after=5"
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx2.AsyncClient() as client:
        kept, rendered = [await client.get(g.url + path, headers=headers) for g in (second, first)]
    assert kept.content == rendered.content
    assert "content-length" in kept.headers and "content-length" not in rendered.headers  # a copy, a stream


async def test_polling_a_background_response_until_it_ends(two_gateways: list[Gateway], gates: Gates) -> None:
    first, second = two_gateways
    created = await sdk(first).responses.create(model="held", input="hello", background=True)
    assert created.status in ("queued", "in_progress") and created.background is True

    async def polled(*statuses: str) -> Response:
        response = await sdk(second).responses.retrieve(created.id)
        assert response.status in statuses, response.status
        return response

    # The run waits at its gate: started, not ended, however long the polls take on a busy machine.
    assert (await eventually(lambda: polled("in_progress"))).completed_at is None
    gates.release(run_of(created.id))
    final = await eventually(lambda: polled("completed"))
    assert final.output_text.startswith("Hello")
    assert final.id == created.id and final.completed_at is not None


async def test_a_plain_request_waits_for_the_answer(two_gateways: list[Gateway]) -> None:
    response = await sdk(two_gateways[0]).responses.create(model="scripted", input="hi", extra_body=FAST)
    assert response.status == "completed" and response.output_text
    items = await sdk(two_gateways[1]).responses.input_items.list(response.id)
    assert [item.type for item in items.data] == ["message"]
    message: Any = items.data[0]
    assert message.content[0].text == "hi"
    # The SDK's streaming helper, whose accumulator checks every event's place.
    async with sdk(two_gateways[1]).responses.stream(model="scripted", input="hi", extra_body=FAST) as helper:
        streamed = await helper.get_final_response()
    assert streamed.output_text == response.output_text and streamed.id != response.id


async def test_cancel_from_another_gateway(two_gateways: list[Gateway]) -> None:
    first, second = two_gateways
    slow = {"params": {"tokens": 1000, "tokens_per_second": 20}}
    created = await sdk(first).responses.create(model="scripted", input="hi", background=True, extra_body=slow)
    await eventually(lambda: _status(second, created.id, "in_progress"), within=10)
    cancelled = await sdk(second).responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert (await sdk(first).responses.retrieve(created.id)).status == "cancelled"


async def _status(gateway: Gateway, response_id: str, status: str) -> bool:
    return (await sdk(gateway).responses.retrieve(response_id)).status == status


async def test_previous_response_id_keeps_the_history_and_tools_run(two_gateways: list[Gateway]) -> None:
    first, second = two_gateways
    events = [
        checked(event)
        async for event in await sdk(first).responses.create(
            model="default", input="What is 6 * 7?", stream=True, extra_body=FAST
        )
    ]
    answer = events[-1].response
    kinds = [item.type for item in answer.output]
    assert kinds[-3:] == ["function_call", "function_call_output", "message"], kinds
    call, result = answer.output[-3], answer.output[-2]
    assert call.name == "calculator" and result.call_id == call.call_id and "42" in result.output
    assert "42" in answer.output_text

    follow_up = await sdk(second).responses.create(
        model="default", input="and times two?", previous_response_id=answer.id, extra_body=FAST
    )
    assert "84" in follow_up.output_text  # the scripted model read the previous answer from the history
    assert follow_up.previous_response_id == answer.id


async def test_an_approval_asked_and_answered(two_gateways: list[Gateway]) -> None:
    first, second = two_gateways
    asked = await sdk(first).responses.create(model="careful", input="What is 6 * 7?", extra_body=FAST)
    assert asked.status == "completed"
    request = asked.output[-1]
    assert request.type == "mcp_approval_request" and request.name == "calculator"
    answer: list[Any] = [{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}]
    events = [
        checked(event)
        async for event in await sdk(second).responses.create(
            model="careful",
            input=answer,
            previous_response_id=asked.id,
            stream=True,
        )
    ]
    went_on = events[-1].response
    assert events[0].type == "response.created" and went_on.id != asked.id
    assert went_on.status == "completed" and "42" in went_on.output_text
    assert [item.type for item in went_on.output] == ["function_call_output", "message"]
    items = await sdk(first).responses.input_items.list(went_on.id)
    assert items.data[0].type == "mcp_approval_response" and items.data[0].approve is True


async def test_two_approvals_asked_at_once_end_one_response_and_are_answered_in_one_request(
    two_gateways: list[Gateway],
) -> None:
    first, second = two_gateways
    asked = await sdk(first).responses.create(model="parallel", input="clean up")
    requests: list[Any] = [item for item in asked.output if item.type == "mcp_approval_request"]
    assert asked.status == "completed" and len(requests) == 2 and asked.output[-1] is requests[-1]
    answers: list[Any] = [
        {"type": "mcp_approval_response", "approval_request_id": item.id, "approve": "logs" in item.arguments}
        for item in requests
    ]
    with pytest.raises(openai.UnprocessableEntityError, match="waits for answers"):  # one of two: nothing answered
        await sdk(second).responses.create(model="parallel", input=answers[:1], previous_response_id=asked.id)
    went_on = await sdk(second).responses.create(model="parallel", input=answers[::-1], previous_response_id=asked.id)
    assert went_on.id == f"{asked.id}.1" and went_on.output_text == "logs deleted, cache kept."
    items = await sdk(first).responses.input_items.list(went_on.id)
    assert sorted((item.approval_request_id, item.approve) for item in items.data) == sorted(  # type: ignore[union-attr]
        (answer["approval_request_id"], answer["approve"]) for answer in answers
    )


async def test_a_question_is_a_function_call_answered_with_its_output(two_gateways: list[Gateway]) -> None:
    client = sdk(two_gateways[0])
    asked = await client.responses.create(model="two", input="go")
    call: Any = asked.output[-1]
    assert call.type == "function_call" and call.name == "tokentail_input" and "Which colour?" in call.arguments
    answer: list[Any] = [{"type": "function_call_output", "call_id": call.call_id, "output": "blue"}]
    second = await client.responses.create(model="two", input=answer, previous_response_id=asked.id)
    assert second.output_text == "blue it is. "
    # Cancelling the first response, which ended at its question, does not stop the run that went on.
    assert (await client.responses.cancel(asked.id)).status == "completed"
    call = second.output[-1]
    answer = [{"type": "function_call_output", "call_id": call.call_id, "output": "3"}]
    third = await client.responses.create(model="two", input=answer, previous_response_id=second.id)
    assert third.output_text == "3 of them." and third.previous_response_id == second.id


async def test_errors_are_the_sdks_exceptions(two_gateways: list[Gateway]) -> None:
    gateway = two_gateways[0]
    with pytest.raises(openai.AuthenticationError):
        await sdk(gateway, "wrong-key-0123456789abcdef").responses.create(model="scripted", input="hi")
    with pytest.raises(openai.NotFoundError):
        await sdk(gateway).responses.retrieve("resp_nothing")
    created = await sdk(gateway).responses.create(model="scripted", input="hi", background=True, extra_body=FAST)
    with pytest.raises(openai.NotFoundError):  # another tenant's
        await sdk(gateway, OTHER_KEY).responses.retrieve(created.id)
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        await sdk(gateway).responses.create(model="nonsense:x", input="hi")
    assert "model" in refused.value.message
    with pytest.raises(openai.UnprocessableEntityError):
        history: list[Any] = [{"role": "assistant", "content": "earlier"}, {"role": "user", "content": "hi"}]
        await sdk(gateway).responses.create(model="scripted", input=history)


async def test_bad_input_is_refused_with_a_clear_error_and_a_long_prompt_is_not(two_gateways: list[Gateway]) -> None:
    client = sdk(two_gateways[0])
    image: list[Any] = [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]
    nested: Any = "deep"
    for _ in range(40):
        nested = {"a": nested}
    refused = [
        (image, "input[0].content: 'input_image' is not supported"),
        ([{"type": "message", "role": "tool", "content": "x"}], "input[0].role"),
        ([{"type": "reasoning", "summary": []}], "input[0].type: 'reasoning' is not supported"),
        ([{"role": "user", "content": "hi", "extra": nested}], "nest"),
    ]
    for given, expected in refused:
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            await client.responses.create(model="scripted", input=given)
        assert expected in caught.value.message, caught.value.message
    with pytest.raises(openai.APIStatusError) as too_long:
        await client.responses.create(model="scripted", input="x" * 100_001)
    assert too_long.value.status_code == 413
    first = await client.responses.create(model="default", input="hi", extra_body=FAST)
    with pytest.raises(openai.UnprocessableEntityError, match="keeps its agent"):
        await client.responses.create(model="careful", input="hi", previous_response_id=first.id)
    long_prompt = "word " * 20_000  # 100 KB: over 64 KB, under TOKENTAIL_MAX_INPUT_CHARS
    answered = await client.responses.create(model="scripted", input=long_prompt[:99_999], extra_body=FAST)
    assert answered.status == "completed" and answered.output_text


async def test_a_browser_s_chat_token_uses_its_own_conversation_only(two_gateways: list[Gateway]) -> None:
    backend = sdk(two_gateways[0])
    first = await backend.responses.create(model="default", input="What is 6 * 7?", extra_body=FAST)
    other = await backend.responses.create(model="scripted", input="elsewhere", extra_body=FAST)
    session_id = first.id.removeprefix("resp_")[:24]  # resp_<session id><run id>
    token = await backend.post(f"/sessions/{session_id}/token", body={"scope": "chat"}, cast_to=dict)
    browser = sdk(two_gateways[1], token["stream_token"])

    assert (await browser.responses.retrieve(first.id)).output_text == first.output_text
    follow_up = await browser.responses.create(model="default", input="and times two?", previous_response_id=first.id)
    assert "84" in follow_up.output_text  # with the session's params: a browser choosing its own is refused
    with pytest.raises(openai.PermissionDeniedError, match="may not choose params"):
        await browser.responses.create(model="default", input="hi", previous_response_id=first.id, extra_body=FAST)
    with pytest.raises(openai.PermissionDeniedError):  # a new conversation needs the API key
        await browser.responses.create(model="scripted", input="hi")
    with pytest.raises(openai.PermissionDeniedError):  # another session's response
        await browser.responses.retrieve(other.id)
    with pytest.raises(openai.PermissionDeniedError):  # deleting is the backend's
        await browser.responses.delete(first.id)


async def test_a_plain_stream_that_is_cut_cancels_its_run(two_gateways: list[Gateway]) -> None:
    first, second = two_gateways
    slow = {"params": {"tokens": 1000, "tokens_per_second": 20}}
    stream = await sdk(first).responses.create(model="scripted", input="hi", stream=True, extra_body=slow)
    seen: list[Any] = []
    async for event in stream:
        seen.append(event)
        if event.type == "response.output_text.delta":
            break
    await stream.close()  # without `background`, the run ends with its request
    await eventually(lambda: _status(second, seen[0].response.id, "cancelled"), within=10)


async def _with_openai_webhooks(
    receiver: Receiver, start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> tuple[AsyncOpenAI, dict[str, Any]]:
    """A stack whose tenant posts its webhooks to `receiver` in OpenAI's format; its SDK client, and
    the webhook configuration it answered."""
    settings = {"agents": AGENTS, "webhook_allowed_urls": [receiver.url + "/hooks/"], **AUTH}
    await start_worker(**settings)
    gateway = await start_gateway(**settings)
    client = sdk(gateway)
    configured = await client.put("/webhook", body={"url": receiver.url + "/hooks/", "format": "openai"}, cast_to=dict)
    return client, configured


async def test_webhooks_in_openai_s_names_verified_by_the_sdk(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> None:
    async with Receiver() as receiver:
        client, configured = await _with_openai_webhooks(receiver, start_gateway, start_worker)
        assert configured["format"] == "openai"
        asked = await client.responses.create(model="careful", input="What is 6 * 7?", extra_body=FAST)
        approval: list[Any] = [
            {"type": "mcp_approval_response", "approval_request_id": asked.output[-1].id, "approve": True}
        ]
        went_on = await client.responses.create(model="careful", input=approval, previous_response_id=asked.id)
        cancelled = await client.responses.create(
            model="scripted",
            input="hi",
            background=True,
            extra_body={"params": {"tokens": 1000, "tokens_per_second": 20}},
        )
        await client.responses.cancel(cancelled.id)
        await eventually(lambda: len(receiver.accepted()) == 3, within=20)

    verified: list[Any] = [
        client.webhooks.unwrap(delivery.body, delivery.headers, secret=configured["secret"])
        for delivery in receiver.accepted()
    ]
    assert sorted((event.data.id, event.type) for event in verified) == sorted(  # sessions deliver apart
        [
            (asked.id, "response.completed"),  # the question ended the response that asked it
            (went_on.id, "response.completed"),
            (cancelled.id, "response.cancelled"),
        ]
    )
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.unwrap(receiver.accepted()[0].body, receiver.accepted()[0].headers, secret="whsec_" + "A" * 44)


async def test_a_request_that_waits_for_its_run_holds_a_stream_slot(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> None:
    await start_worker(**AUTH)
    gateway = await start_gateway(max_streams_per_tenant=1, **AUTH)
    client = sdk(gateway)
    slow = {"params": {"tokens": 1000, "tokens_per_second": 20}}
    stream = await client.responses.create(model="scripted", input="hi", background=True, stream=True, extra_body=slow)
    async for event in stream:
        if event.type == "response.in_progress":
            break  # the tenant's one stream is open
    with pytest.raises(openai.RateLimitError) as refused:
        await client.responses.create(model="scripted", input="wait for me", extra_body=FAST)
    assert refused.value.response.headers["Retry-After"]
    await stream.close()
    done = await client.responses.create(model="scripted", input="wait for me", extra_body=FAST)
    assert done.status == "completed"


async def test_a_plain_stream_ended_by_a_deploy_leaves_its_run_going(two_gateways: list[Gateway], gates: Gates) -> None:
    first, second = two_gateways
    stream = await sdk(first).responses.create(model="held", input="hi", stream=True)
    seen: list[Any] = []
    async for event in stream:
        seen.append(event)
        if event.type == "response.output_text.delta":
            break
    stopping = asyncio.create_task(first.stop())  # the gateway ends its streams, as on SIGTERM
    rest = [event async for event in stream]
    await stopping
    assert rest == [] or rest[-1].type != "response.completed"  # cut short by the deploy, not by the client
    response_id = seen[0].response.id
    assert (await sdk(second).responses.retrieve(response_id)).status == "in_progress"  # held at its gate
    gates.release(run_of(response_id))
    await eventually(lambda: _status(second, response_id, "completed"), interval=0.05)


# -- a response's client leaving, cancels and slots, at their worst instants -------------------------


async def _session_ids(redis: Redis, settings: Settings) -> list[str]:
    """Every session the test's gateways made (their meta keys, under the test's key prefix)."""
    return [key.decode().split("{")[1].split("}")[0] async for key in redis.scan_iter(f"{settings.key_prefix}:*:meta")]


async def _stalled_stream(gateway: Gateway, body: dict[str, Any]) -> tuple[socket.socket, asyncio.StreamWriter, str]:
    """POST /v1/responses from a raw socket with a small receive buffer that reads the response's
    head and first events (up to its id), then reads no more: the gateway's writes to it block."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gateway.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    seen = b""
    while (found := RESPONSE_ID.search(seen)) is None:
        seen += await asyncio.wait_for(reader.read(4096), 10)
    return sock, writer, found[0].decode()


RESPONSE_ID = re.compile(rb"resp_s_[A-Za-z0-9_-]{22}r_[A-Za-z0-9_-]{12}")


async def _slots_taken(redis: Redis, settings: Settings, tenant: str = "acme") -> int:
    return int(await redis.zcard(Keys(settings.key_prefix).tenant_streams(tenant)))


async def test_a_stalled_stream_s_client_leaving_after_the_next_response_started_does_not_cancel_it(
    start_gateway: Callable[..., Any], runs: AllWrites, redis: Redis, settings: Settings
) -> None:
    """Response A's client stopped reading (A's end is stored but not yet written to it); the
    application made response B from A meanwhile; then A's client goes away. B goes on."""
    gateway = await start_gateway(**AUTH)  # no worker: this test writes the runs' events itself
    sock, writer, first_id = await _stalled_stream(gateway, {"model": "scripted", "input": "hi", "stream": True})
    try:
        parsed = parse_response_id(first_id)
        assert parsed is not None
        session_id, run_id, _ = parsed
        assert await runs.start_run(session_id, run_id, run_id, token="lease") is not None
        lease = RunLease(runs, session_id, run_id, "lease")
        delta = MessageDelta(run_id=run_id, text="x" * 16_000).model_dump_json()
        for _ in range(20):  # 10 MB: more than the sockets' buffers hold, so A's end waits unwritten
            await lease.append([("message.delta", delta)] * 32)
        await lease.append([], ending=completion(run_id, "x"))
        assert await _slots_taken(redis, settings) == 1  # A's stream is still open, its writes blocked

        second = await sdk(gateway).responses.create(
            model="scripted", input="and then?", previous_response_id=first_id, background=True
        )
        assert second.status == "queued"
    finally:
        writer.close()  # A's client goes away, its end never read
        sock.close()

    async def ended() -> bool:  # its slot is given back after its on_close ran
        return await _slots_taken(redis, settings) == 0

    await eventually(ended, what="A's stream ended")
    assert (await sdk(gateway).responses.retrieve(second.id)).status == "queued"  # B was not cancelled
    assert (await sdk(gateway).responses.retrieve(first_id)).status == "completed"


async def test_a_cancel_of_a_response_whose_run_ended_just_then_does_not_cancel_the_next(
    start_gateway: Callable[..., Any], runs: AllWrites, store: SessionStore
) -> None:
    """POST /v1/responses/{A}/cancel reads A's state, then cancels: B is made from A in between."""
    gateway = await start_gateway(**AUTH)
    client = sdk(gateway)
    first = await client.responses.create(model="scripted", input="hi", background=True)
    parsed = parse_response_id(first.id)
    assert parsed is not None
    session_id, run_id, _ = parsed
    assert await runs.start_run(session_id, run_id, run_id, token="lease") is not None
    gateway_runs: AllWrites = gateway.app.state.runs
    cancel = gateway_runs.cancel_run
    made: list[RunRecord] = []

    async def after_the_next_response_is_made(*args: Any, **kwargs: Any) -> Any:
        # The worst instant: A's run ends and B's is queued between the gateway's read and its cancel.
        if not made:
            await RunLease(runs, session_id, run_id, "lease").append([], ending=completion(run_id, "done"))
            made.append(RunRecord(run_id=new_run_id(), input="and then?", model="scripted"))
            await runs.queue_run(session_id, made[0])
        return await cancel(*args, **kwargs)

    gateway_runs.cancel_run = after_the_next_response_is_made  # type: ignore[method-assign]
    cancelled = await client.responses.cancel(first.id)
    assert cancelled.status == "completed"  # A had ended: nothing of it to cancel
    runs_now = {run.run_id: run.status for run in (await store.get_session(session_id)).runs}
    assert runs_now == {run_id: "completed", made[0].run_id: "queued"}  # B goes on


class _Hasty(AsyncOpenAI):
    """The SDK, retrying as it does but at once: not after the seconds the 429's Retry-After asks for
    (what is tested is what its tries start, not how long it waits between them)."""

    def _calculate_retry_timeout(self, *args: Any, **kwargs: Any) -> float:
        return 0.01


async def test_an_sdk_retrying_a_429_at_the_stream_limit_started_no_run(
    start_gateway: Callable[..., Any], redis: Redis, settings: Settings
) -> None:
    gateway = await start_gateway(max_streams_per_tenant=1, **AUTH)  # no worker: runs stay queued
    gateway.app.state.stream_slots._wait_seconds = 0  # no slot comes: each try is refused at once, not in 2 s
    async with httpx2.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        holder = (await http.post("/v1/sessions", json={"input": "hold"})).json()
        async with http.stream("GET", holder["events_url"]) as held:  # the tenant's one stream
            assert held.status_code == 200
            retrying = _Hasty(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=2, timeout=30)
            _clients.append(retrying)
            for streamed in (True, False):  # a stream, and a request that waits for its run
                with pytest.raises(openai.RateLimitError):
                    await retrying.responses.create(model="scripted", input="hi", stream=streamed)
            assert await _session_ids(redis, settings) == [holder["session_id"]]  # 6 tries, 0 runs


async def test_a_waiting_request_whose_client_timed_out_gives_its_slot_back_and_its_run_up(
    start_gateway: Callable[..., Any], redis: Redis, settings: Settings, store: SessionStore
) -> None:
    gateway = await start_gateway(**AUTH)  # no worker: each try's run stays queued, its request waiting
    impatient = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=2, timeout=1.5)
    _clients.append(impatient)
    with pytest.raises(openai.APITimeoutError):
        await impatient.responses.create(model="scripted", input="hi")
    session_ids = await _session_ids(redis, settings)
    assert len(session_ids) == 3  # the SDK tried three times

    async def given_up() -> None:
        assert await _slots_taken(redis, settings) == 0
        statuses = [(await store.get_session(session_id)).runs[0].status for session_id in session_ids]
        assert statuses == ["cancelled"] * 3

    await eventually(given_up, what="every try's slot given back and its run cancelled")


async def test_openai_webhooks_of_a_deleted_conversation_name_each_response(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> None:
    async with Receiver(always_refuse=True) as receiver:  # nothing is delivered before the deletion
        client, configured = await _with_openai_webhooks(receiver, start_gateway, start_worker)
        first = await client.responses.create(model="two", input="go")
        asked: Any = first.output[-1]  # a tokentail_input function call
        answer: list[Any] = [{"type": "function_call_output", "call_id": asked.call_id, "output": "blue"}]
        second = await client.responses.create(model="two", input=answer, previous_response_id=first.id)
        asked = second.output[-1]
        answer = [{"type": "function_call_output", "call_id": asked.call_id, "output": "3"}]
        third = await client.responses.create(model="two", input=answer, previous_response_id=second.id)
        assert third.status == "completed" and third.id.endswith(".2")
        await client.responses.delete(first.id)  # the session and its runs' records are gone
        receiver.always_refuse = False
        await eventually(lambda: len(receiver.accepted()) == 3, within=30)

    verified: list[Any] = [
        client.webhooks.unwrap(delivery.body, delivery.headers, secret=configured["secret"])
        for delivery in receiver.accepted()
    ]
    assert [(event.data.id, event.type) for event in verified] == [
        (first.id, "response.completed"),
        (second.id, "response.completed"),
        (third.id, "response.completed"),
    ]


async def test_a_background_response_is_queued_until_started_and_an_answer_s_is_in_progress_at_once(
    start_gateway: Callable[..., Any], runs: AllWrites
) -> None:
    """What docs/openai-responses.md says `POST /v1/responses` with `background` answers at once."""
    gateway = await start_gateway(**AUTH)  # no worker: this test starts the run and asks its question
    client = sdk(gateway)
    created = await client.responses.create(model="scripted", input="hi", background=True)
    assert created.status == "queued"  # no worker has started its run yet
    parsed = parse_response_id(created.id)
    assert parsed is not None
    session_id, run_id, _ = parsed
    assert await runs.start_run(session_id, run_id, run_id, token="lease") is not None
    schema = {"type": "string"}
    question = Question(input_id="in_colour", kind="text", prompt="Colour?", answer_schema=schema)
    assert await RunLease(runs, session_id, run_id, "lease").ask([question], [question]) is Asked.WAITING
    assert (await client.responses.retrieve(created.id)).status == "completed"  # it ended at its question
    answer: list[Any] = [{"type": "function_call_output", "call_id": "in_colour", "output": "red"}]
    going_on = await client.responses.create(
        model="scripted", input=answer, previous_response_id=created.id, background=True
    )
    assert going_on.status == "in_progress"  # the run goes on: nothing of it waits in line
    assert going_on.id == created.id + ".1"
