"""`response.steer` in the Responses API's WebSocket mode, driven by the official `openai` SDK
(`connection.response.steer(...)`, its lanes) against real gateways, a real worker and Redis
(gateway/protocols/responses/steering.py): accepted, the steered response ends incomplete
(`steered`) and its successor follows on the lane; the failures' codes; a steer for a response
stopped at a question waits (`response.steer.pending`); and a steer outlives its socket."""

import json
from typing import Any

import pytest
from openai.lib.responses_websocket import AsyncResponsesWebSocketLane, AsyncResponsesWebSocketSession

from tests.integration.test_openai_responses import run_of
from tests.integration.test_openai_responses_ws import (
    AUTH,
    LIMITS,
    TERMINAL,
    _close_clients,  # noqa: F401  its autouse fixture, here too: see below
    as_retrieved,
    checked,
    create,
    sdk,
)
from tests.support.gates import Gates
from tests.support.waiting import eventually

pytestmark = pytest.mark.responses
# The clients `sdk` makes in this module's tests are closed at each test's end (`_close_clients`), on its
# own event loop: left for a later test of the other module, they failed that test's teardown.


AGENTS = {
    "listening": "tests.agents.steering_agent:listening_then_held",
    "careful": "tests.agents.asking_agent:CAREFUL",
}


async def _until(lane: AsyncResponsesWebSocketLane, type_: str, seen: list[Any]) -> Any:
    """Read the lane's events into `seen` up to one of `type_`."""
    while not seen or seen[-1].type != type_:
        seen.append(checked(await lane.recv()))
    return seen[-1]


async def _response(lane: AsyncResponsesWebSocketLane) -> list[Any]:
    """One response's events, from its response.created to its end."""
    events = [checked(await lane.recv())]
    while events[-1].type not in TERMINAL:
        events.append(checked(await lane.recv()))
    return events


async def test_a_steer_is_accepted_ends_its_response_steered_and_the_lane_follows_the_successor(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    await start_worker(agents=AGENTS, **AUTH)
    first, second = [await start_gateway(agents=AGENTS, **AUTH) for _ in range(2)]
    async with (
        sdk(first).responses.connect() as connection,
        AsyncResponsesWebSocketSession(connection, limits=LIMITS) as session,
    ):
        lane = session.lane("chat")
        await lane.send(create(model="listening", input="go"))
        seen: list[Any] = []
        delta = await _until(lane, "response.output_text.delta", seen)
        steered_id = seen[0].response.id
        await eventually(lambda: gates.reached(run_of(steered_id)) == [1], what="the run at its gate")
        await connection.response.steer(input="be brief", previous_response_id=steered_id)
        answer = checked(await lane.recv())
        assert answer.type == "response.steer.accepted" and answer.stream_id == "chat"
        assert answer.steer.previous_response_id == steered_id and answer.steer.id.startswith("st_")
        assert answer.sequence_number == delta.sequence_number  # the last the socket sent of it
        gates.release(run_of(steered_id))
        ended = await _until(lane, "response.incomplete", seen)
        await eventually(lambda: gates.reached(run_of(steered_id), "after") == [1], what="the run past the steer")
        # The run went on from the steered response: no steer for it now.
        await connection.response.steer(input="and more", previous_response_id=steered_id)
        late = checked(await session.default.recv())  # no lane: the response is no longer in flight here
        gates.release(run_of(steered_id), "after")
        successor = await _response(lane)

    assert ended.response.status == "incomplete" and ended.response.incomplete_details.reason == "steered"
    assert late.type == "response.steer.failed" and late.error.code == "response_not_active"
    assert ended.response.output_text == "Working."
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    assert successor[0].type == "response.created" and successor[0].response.id == f"{steered_id}.1"
    assert successor[0].response.previous_response_id == steered_id
    assert successor[-1].type == "response.completed"
    assert successor[-1].response.output_text == " Taken in: be brief."
    assert [e.sequence_number for e in successor] == list(range(len(successor)))
    # Each is the same as its HTTP stream, read on another gateway.
    for events, response_id in ((seen, steered_id), (successor, f"{steered_id}.1")):
        streamed = [e async for e in await sdk(second).responses.retrieve(response_id, stream=True)]
        assert [as_retrieved(e) for e in events] == [e.to_dict() for e in streamed]
    retrieved = await sdk(second).responses.retrieve(steered_id)
    assert retrieved.status == "incomplete" and retrieved.incomplete_details.reason == "steered"  # type: ignore[union-attr]
    # The successor's input is the steer.
    (item,) = [item async for item in sdk(second).responses.input_items.list(f"{steered_id}.1")]
    assert item.type == "message" and item.role == "user" and item.content[0].text == "be brief"  # type: ignore[union-attr]


async def test_a_steer_that_cannot_be_taken_is_failed_with_its_code_and_nothing_stored(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    await start_worker(agents=AGENTS, **AUTH)
    gateway = await start_gateway(agents=AGENTS, **AUTH)
    async with sdk(gateway).responses.connect() as connection:
        await connection.send(create(model="scripted", input="hello", params={"tokens": 5, "tokens_per_second": 0}))
        events = [checked(await connection.recv())]
        while events[-1].type not in TERMINAL:
            events.append(checked(await connection.recv()))
        finished = events[0].response.id
        unknown = finished[:-4] + "zzzz"
        image = [{"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]
        cases = [
            ("response_not_found", {"previous_response_id": unknown, "input": "x"}),
            ("response_not_found", {"previous_response_id": "not-a-response", "input": "x"}),
            ("response_already_completed", {"previous_response_id": finished, "input": "too late"}),
            ("invalid_input", {"previous_response_id": finished, "input": image}),
            ("invalid_input", {"previous_response_id": finished, "input": []}),
            ("invalid_input", {"previous_response_id": finished, "input": "  "}),
            ("invalid_input", {"previous_response_id": finished, "input": [{"role": "assistant", "content": "x"}]}),
            ("invalid_input", {"previous_response_id": finished, "input": "a lone \ud800 surrogate"}),
        ]
        for _, fields in cases:
            await connection.send_raw(json.dumps({"type": "response.steer", **fields}))
        answers = [checked(await connection.recv()) for _ in cases]
    for (code, fields), answer in zip(cases, answers, strict=True):
        assert answer.type == "response.steer.failed", answer
        assert answer.error.code == code and answer.error.type == "invalid_request_error", (code, answer.error)
        assert answer.steer.previous_response_id == fields["previous_response_id"] and answer.steer.id is None


async def test_a_steer_for_a_response_stopped_at_a_question_waits_for_the_answer(
    start_gateway: Any, start_worker: Any
) -> None:
    await start_worker(agents=AGENTS, **AUTH)
    gateway = await start_gateway(agents=AGENTS, **AUTH)
    async with (
        sdk(gateway).responses.connect() as connection,
        AsyncResponsesWebSocketSession(connection, limits=LIMITS) as session,
    ):
        lane = session.lane("tools")
        await lane.send(create(model="careful", input="What is 6 * 7?"))
        asked = await lane.get_final_response()
        request = asked.output[-1]
        assert request.type == "mcp_approval_request"
        await connection.response.steer(input="and say it in words", previous_response_id=asked.id)
        accepted, pending = checked(await session.default.recv()), checked(await session.default.recv())
        assert accepted.type == "response.steer.accepted" and pending.type == "response.steer.pending"
        assert pending.steer.id == accepted.steer.id and pending.reason == "waiting_for_required_input"
        assert [stub.to_dict() for stub in pending.required_input] == [
            {"type": "mcp_approval_response", "approval_request_id": request.id}
        ]
        answer = [{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}]
        await lane.send(create(model="careful", input=answer, previous_response_id=asked.id))
        # The answer's response, which the steer ends where the run takes it in, then its successor.
        answered = await _response(lane)
        successor = await _response(lane)
    assert answered[0].response.id == f"{asked.id}.1"
    assert answered[-1].type == "response.incomplete" and answered[-1].response.incomplete_details.reason == "steered"
    assert successor[0].response.id == f"{asked.id}.2" and successor[-1].type == "response.completed"
    # The approved tool ran in the answer's response; the model's next turn took the steer in.
    outputs = [item.output for item in answered[-1].response.output if item.type == "function_call_output"]
    assert outputs == ["42"]
    assert '"and say it in words"' in successor[-1].response.output_text


async def test_an_accepted_steer_outlives_its_socket_and_the_successor_is_read_on_another_gateway(
    start_gateway: Any, start_worker: Any, gates: Gates
) -> None:
    await start_worker(agents=AGENTS, **AUTH)
    first, second = [await start_gateway(agents=AGENTS, **AUTH) for _ in range(2)]
    async with sdk(first).responses.connect() as connection:
        await connection.send(create(model="listening", input="go", background=True))
        created = checked(await connection.recv())
        steered_id = created.response.id
        await eventually(lambda: gates.reached(run_of(steered_id)) == [1], what="the run at its gate")
        await connection.response.steer(input="be brief", previous_response_id=steered_id)
        while (answer := checked(await connection.recv())).type != "response.steer.accepted":
            pass
    # The socket is gone; the steer is the session's: the run takes it in when it goes on.
    gates.release(run_of(steered_id))
    gates.release(run_of(steered_id), "after")
    successor = [e async for e in await sdk(second).responses.retrieve(f"{steered_id}.1", stream=True)]
    assert answer.steer.previous_response_id == steered_id
    assert successor[0].type == "response.created" and successor[-1].type == "response.completed"
    assert successor[-1].response.output_text == " Taken in: be brief."
