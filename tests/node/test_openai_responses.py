"""npm `openai` (pinned by this folder's lockfile) against two tokentail gateways and a worker, as
docs/openai-responses.md configures it: a background stream cut and resumed on the other gateway
(after a worker's kill -9 too), an approval asked and answered, a cancel from the other gateway, a
wrong key."""

from typing import Any

import pytest

from tests.node.conftest import API_KEY, HELD, SLOW, ChatStack, run_node
from tokentail.shared.vocabulary.response_ids import parse_response_id
from tokentail.worker.providers.scripted import scripted_tokens

pytestmark = pytest.mark.responses


INPUT = "hello from node"
ANSWER = "".join(scripted_tokens(INPUT, SLOW["tokens"]))


def options(chats: ChatStack) -> dict[str, Any]:
    return {"gateways": [chats.url, chats.stack.gateway()], "apiKey": API_KEY, "input": INPUT, "params": SLOW}


def test_a_cut_background_stream_resumes_on_the_other_gateway(chats: ChatStack) -> None:
    result = run_node("openai_responses.mjs", "resume", options(chats)).result
    assert result["sequence"] == list(range(len(result["sequence"]))), "no gap, no duplicate"
    assert result["types"][:3] == ["response.created", "response.queued", "response.in_progress"]
    assert result["types"][-1] == "response.completed" and result["status"] == "completed"
    assert result["keptText"] == result["outputText"] == ANSWER
    assert result["retrieved"] == {"status": "completed", "outputText": ANSWER}  # the SDK's output_text
    assert result["itemsDone"] == ["completed"]


def crashed_at_the_cut(chats: ChatStack, driver: str, scenario: str, options: dict[str, Any]) -> dict[str, Any]:
    """The driver's scenario on a response whose run waits at its gate (tests/support/gates.py) after its
    first delta, where the driver cuts: its worker killed -9 then, and the gate released for the
    worker that takes the run over. Its result, once the run was taken over."""

    def ids(step: dict[str, Any]) -> tuple[str, str, int]:
        parsed = parse_response_id(step["responseId"])
        assert parsed is not None
        return parsed

    def crash(step: dict[str, Any]) -> None:
        if step["step"] == "cut":
            chats.crash_worker()
            chats.gates.release(ids(step)[1])

    held = {**options, "model": HELD["agent"], "params": HELD["params"], "cutAfter": 1}
    outcome = run_node(driver, scenario, held, on_step=crash)
    session_id, _, _ = ids(outcome.step("cut"))
    run = chats.http.get(f"/v1/sessions/{session_id}").json()["runs"][-1]
    assert run["status"] == "completed" and run["attempt"] == 2, "the run was taken over"
    return outcome.result


def test_after_a_worker_is_killed_the_answer_is_one_coherent_text(chats: ChatStack) -> None:
    result = crashed_at_the_cut(chats, "openai_responses.mjs", "resume", options(chats))
    assert result["sequence"] == list(range(len(result["sequence"])))
    assert result["status"] == "completed" and result["keptText"] == result["outputText"] == ANSWER
    # The run went on where it stopped (run.continued): its one message item went on too.
    assert result["itemsDone"] == ["completed"], "one item, continued, none incomplete"
    assert len(result["outputIds"]) == 1


def test_cancel_from_the_other_gateway_and_a_wrong_key(chats: ChatStack) -> None:
    slow = {**options(chats), "params": {"tokens": 1000, "tokens_per_second": 20}}
    result = run_node("openai_responses.mjs", "cancel", slow).result
    assert result["created"] in ("queued", "in_progress") and result["cancelled"] == "cancelled"
    assert result["refused"] == {"name": "AuthenticationError", "status": 401, "isAuth": True}


def test_an_approval_asked_and_answered_on_the_other_gateway(chats: ChatStack) -> None:
    result = run_node("openai_responses.mjs", "approval", options(chats)).result
    assert result["asked"] == {"status": "completed", "type": "mcp_approval_request", "name": "calculator"}
    assert result["answered"]["status"] == "completed" and "42" in result["answered"]["text"]
    assert result["answered"]["previous"] == result["askedId"]
