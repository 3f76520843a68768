"""tokentail's own browser client (/static/tokentail.js) in Node, whose EventSource stands in for a
browser's, against a gateway and a worker."""

from typing import Any

from tests.node.conftest import HELD, SLOW, ChatStack, run_node
from tokentail.gateway.app import STATIC
from tokentail.worker.providers.scripted import scripted_tokens

ANSWER = "".join(scripted_tokens("hello", SLOW["tokens"]))


def test_follow_tries_its_first_connection_again_until_the_gateway_is_back(chats: ChatStack) -> None:
    """A page follows a session whose run is going (held at its gate) while the gateway is down: its
    first connection fails, the gateway is started again on its port, and the page follows the run to
    its end, as it does after a reconnect (before, it went idle at once, with nothing shown)."""
    made = chats.http.post("/v1/sessions", json={"input": "hello", **HELD})
    assert made.status_code == 201, made.text
    session_id, run_id, token = made.json()["session_id"], made.json()["run_id"], made.json()["stream_token"]
    chats.kill_gateway()

    def back(step: dict[str, Any]) -> None:  # the first connection failed: the gateway comes back
        chats.restart_gateway()
        chats.gates.release(run_id)

    options = {"gateway": chats.url, "sessionId": session_id, "token": token, "client": str(STATIC / "tokentail.js")}
    outcome = run_node(
        "tokentail_js.mjs", "follow", options, on_step=back, timeout=150, node_flags=("--experimental-eventsource",)
    )
    result = outcome.result
    assert [step["step"] for step in outcome.steps] == ["refused"]
    assert result["states"][:2] == ["connecting", "reconnecting"] and result["states"][-1] == "idle", result["states"]
    assert "live" in result["states"]
    [turn] = result["turns"]
    assert (turn["runId"], turn["status"], turn["text"]) == (run_id, "completed", ANSWER)
