"""Issue 41's scenario with the real clients: an agent streams "Before the question. ", asks for an
approval, the question is answered on another device (REST), the agent streams on, and its worker is
killed -9 ten deltas after the answer, while the run waits at its gate (tests/support/gates.py). The real
`useChat` (ai 7's AbstractChat, resumeStream) and `@ag-ui/client` (connectAgent) must end showing
`run.completed.output`, each piece once: with an agent that starts over (`run.retrying`) and with one
that goes on (`@continues`, `run.continued`)."""

from typing import Any

import pytest

from tests.agents.asking_agent import BEFORE_THE_QUESTION, HELD_AFTER
from tests.node.conftest import ChatStack, Outcome, run_node
from tests.support.waiting import eventually_sync


def answer_elsewhere_then_kill(chats: ChatStack, session_id: str) -> None:
    """Another device answers the question (REST); once the run streamed its ten words after the
    answer and waits at its gate, the worker is killed -9, and the gate released for the next."""
    state = chats.http.get(f"/v1/sessions/{session_id}").json()
    question = state["pending_input"]
    run_id = question["run_id"]
    answered = chats.http.post(
        f"/v1/sessions/{session_id}/runs/{run_id}/input",
        json={"input_id": question["input_id"], "answer": {"approved": True}},
    )
    assert answered.status_code == 202, answered.text

    def held_after_the_words() -> None:
        assert chats.gates.reached(run_id), "the run is not at its gate yet"
        text = chats.http.get(f"/v1/sessions/{session_id}").json()["transcript"][-1]["content"]
        assert text.endswith(f"Word {HELD_AFTER - 1}. "), text  # stored: the clients may have it

    eventually_sync(held_after_the_words, what=f"the run held {HELD_AFTER} deltas after the answer")
    chats.crash_worker()
    chats.gates.release(run_id)  # the attempt that takes the run over goes through


def play(chats: ChatStack, driver: str, agent: str) -> tuple[Outcome, dict[str, Any]]:
    chat_id = f"elsewhere-{driver.removesuffix('.mjs')}-{agent}"
    token = chats.chat(chat_id, agent=agent)
    session_id = chats.session(chat_id)["session_id"]
    options = {
        "gateway": chats.url,
        "chatId": chat_id,
        "threadId": chat_id,
        "token": token,
        "input": "clean up",
        "sessionId": session_id,
    }

    def on_step(step: dict[str, Any]) -> None:
        if step["step"] == "asked":
            answer_elsewhere_then_kill(chats, session_id)

    outcome = run_node(driver, "answeredElsewhere", options, on_step=on_step, timeout=120)
    run: dict[str, Any] = chats.session(chat_id)["runs"][-1]
    assert run["status"] == "completed" and run["attempt"] == 2, "the run was taken over"
    assert run["output"].startswith(BEFORE_THE_QUESTION) and run["output"].count(BEFORE_THE_QUESTION) == 1
    return outcome, run


AGENTS = ["ask_then_stream", "ask_then_go_on"]  # starts over (run.retrying); goes on (run.continued)


@pytest.mark.ai_sdk
@pytest.mark.parametrize("agent", AGENTS)
def test_use_chat_resumed_after_an_answer_elsewhere_and_a_kill_shows_the_output_once(
    chats: ChatStack, agent: str
) -> None:
    outcome, run = play(chats, "ai_sdk.mjs", agent)
    messages = outcome.result["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant"], "one answer, not two"
    text = "".join(part["text"] for part in messages[1]["parts"] if part["type"] == "text")
    assert text == run["output"]


@pytest.mark.ag_ui
@pytest.mark.parametrize("agent", AGENTS)
def test_ag_ui_connected_after_an_answer_elsewhere_and_a_kill_shows_the_output_once(
    chats: ChatStack, agent: str
) -> None:
    outcome, run = play(chats, "ag_ui.mjs", agent)
    assert outcome.result["invalid"] == [], "every event validates against @ag-ui/core's schema"
    assert outcome.result["error"] is None and outcome.result["firstError"] is None
    messages = outcome.result["messages"]
    text = "".join(m["content"] for m in messages if m["role"] == "assistant" and m.get("content"))
    assert text == run["output"]
