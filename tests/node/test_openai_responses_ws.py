"""npm `openai`'s Responses API WebSocket mode (pinned by this folder's lockfile) against tokentail
gateways and a worker as separate processes: lanes, a follow-up and an approval on one socket; a
response cut mid-answer (its socket dropped, or its gateway killed -9, its worker killed -9 too) read
on from where it was on the other gateway; a wrong key."""

import signal
from typing import Any

import pytest

from tests.node.conftest import API_KEY, SLOW, ChatStack, run_node
from tests.node.test_openai_responses import crashed_at_the_cut
from tokentail.worker.providers.scripted import scripted_tokens

pytestmark = pytest.mark.responses


INPUT = "hello from a socket"
ANSWER = "".join(scripted_tokens(INPUT, SLOW["tokens"]))


def options(chats: ChatStack, gateways: list[str] | None = None, background: bool = False) -> dict[str, Any]:
    gateways = gateways or [chats.url, chats.stack.gateway()]
    return {"gateways": gateways, "apiKey": API_KEY, "input": INPUT, "params": SLOW, "background": background}


def test_lanes_a_follow_up_and_an_approval_on_one_socket_and_a_wrong_key(chats: ChatStack) -> None:
    result = run_node("openai_responses_ws.mjs", "lanes", options(chats)).result
    one = result["one"]
    assert one["sequence"] == list(range(len(one["sequence"]))) and one["types"] == result["httpTypes"]
    assert one["status"] == "completed" and one["text"] == one["outputText"] == one["sdkText"] != ""
    assert result["two"]["status"] == "completed" and result["two"]["sdkText"]
    assert result["next"] == {"status": "completed", "previous": one["id"]}
    assert result["asked"] == {"status": "completed", "type": "mcp_approval_request", "name": "calculator"}
    assert result["answered"]["status"] == "completed" and "42" in result["answered"]["text"]
    assert result["refused"] is not None and "401" in result["refused"], result["refused"]  # refused at the upgrade


def test_a_background_response_whose_socket_dropped_and_worker_died_resumes_on_the_other_gateway(
    chats: ChatStack,
) -> None:
    result = crashed_at_the_cut(chats, "openai_responses_ws.mjs", "drop", options(chats, background=True))
    assert result["sequence"] == list(range(len(result["sequence"]))), "no gap, no duplicate"
    assert result["types"][-1] == "response.completed" and result["status"] == "completed"
    assert result["text"] == result["outputText"] == ANSWER
    assert result["retrieved"] == {"status": "completed", "outputText": ANSWER}


def test_a_response_whose_gateway_was_killed_goes_on_and_resumes_on_the_other_gateway(chats: ChatStack) -> None:
    doomed = chats.stack.gateway()

    def kill_gateway(step: dict[str, Any]) -> None:
        if step["step"] == "cut":
            chats.stack.gateways[doomed].send_signal(signal.SIGKILL)

    result = run_node(
        "openai_responses_ws.mjs", "drop", options(chats, [doomed, chats.url]), on_step=kill_gateway
    ).result
    assert result["sequence"] == list(range(len(result["sequence"]))), "no gap, no duplicate"
    assert result["status"] == "completed" and result["text"] == result["outputText"] == ANSWER


STEER = "say it in French"


def test_a_steer_ends_the_response_steered_and_its_successor_follows_on_the_lane(chats: ChatStack) -> None:
    result = run_node("openai_responses_ws.mjs", "steer", options(chats) | {"steer": STEER}).result
    assert result["answer"]["type"] == "response.steer.accepted" and result["answer"]["streamId"] == "chat"
    _check_steered(result)
    assert result["failed"] == ["response_not_found", "response_already_completed"]


def test_a_steer_accepted_by_a_gateway_killed_right_after_is_followed_on_the_other_gateway(chats: ChatStack) -> None:
    doomed = chats.stack.gateway()

    def kill_gateway(step: dict[str, Any]) -> None:
        if step["step"] == "accepted":
            chats.stack.gateways[doomed].send_signal(signal.SIGKILL)

    opts = options(chats, [doomed, chats.url]) | {"steer": STEER, "cut": True}
    result = run_node("openai_responses_ws.mjs", "steer", opts, on_step=kill_gateway).result
    assert result["answer"]["type"] == "response.steer.accepted"
    _check_steered(result)


def _check_steered(result: dict[str, Any]) -> None:
    steered, successor = result["steered"], result["successor"]
    assert steered["sequence"] == list(range(len(steered["sequence"]))), "no gap, no duplicate"
    assert steered["types"][-1] == "response.incomplete" and steered["reason"] == "steered"
    assert steered["text"] == steered["outputText"] != "" and ANSWER.startswith(steered["text"])
    assert len(steered["text"]) < len(ANSWER), "cut where the steer was taken in"
    steered_id = result["answer"]["steeredId"]
    assert successor["id"] == f"{steered_id}.1" and successor["previous"] == steered_id
    assert successor["sequence"] == list(range(len(successor["sequence"])))
    assert successor["types"][-1] == "response.completed" and successor["status"] == "completed"
    assert f'"{STEER}"' in successor["text"] and successor["text"] == successor["outputText"]
