"""The Vercel AI SDK's own chat (npm `ai` v7: AbstractChat, the class `useChat` wraps, with
DefaultChatTransport and WebSocketChatTransport) against a tokentail gateway and worker, configured as
docs/ui-protocols.md says: the message it assembles is the run tokentail recorded."""

from typing import Any

import pytest

from tests.node.conftest import HELD, SLOW, ChatStack, Outcome, run_node
from tokentail.worker.providers.scripted import scripted_tokens

pytestmark = pytest.mark.ai_sdk


def chat(
    chats: ChatStack, scenario: str, chat_id: str, input: str = "hello", held: bool = False, **kwargs: Any
) -> Outcome:
    """The scenario on a chat whose run is SLOW's answer; `held`: which waits at its gate (tests/support/gates.py)."""
    session = HELD if held else {"params": SLOW}
    options = {"gateway": chats.url, "chatId": chat_id, "token": chats.chat(chat_id, **session), "input": input}
    return run_node("ai_sdk.mjs", scenario, options, **kwargs)


def assistant(outcome: Outcome) -> dict[str, Any]:
    messages = outcome.result["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant"], "one answer, not two"
    message: dict[str, Any] = messages[1]
    return message


def text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


def last_run(chats: ChatStack, chat_id: str) -> dict[str, Any]:
    run: dict[str, Any] = chats.session(chat_id)["runs"][-1]
    return run


def test_use_chat_assembles_the_run_s_text_reasoning_tool_call_and_data(shared_chats: ChatStack) -> None:
    token = shared_chats.chat("tools", agent="every_event")
    outcome = run_node(
        "ai_sdk.mjs", "send", {"gateway": shared_chats.url, "chatId": "tools", "token": token, "input": "rain"}
    )
    assert outcome.result["status"] == "ready" and outcome.result["error"] is None
    message = assistant(outcome)
    parts = {part["type"]: part for part in message["parts"]}
    assert text_of(message) == "Found three."
    assert parts["reasoning"]["text"] == "Thinking it over. Look it up first."
    tool = parts["tool-lookup"]
    assert (tool["state"], tool["toolCallId"], tool["input"], tool["output"]) == (
        "output-available",
        "call_1",
        {"q": "rain"},
        {"found": 3},
    )
    assert parts["data-chart"]["data"] == {"points": [1, 2, 3]}
    assert message["metadata"]["run_id"] == message["id"] == last_run(shared_chats, "tools")["run_id"]


def test_use_chat_resumes_a_dropped_connection_through_its_reconnect_path(shared_chats: ChatStack) -> None:
    outcome = chat(shared_chats, "drop", "dropped")
    dropped = outcome.step("dropped")
    assert dropped["status"] == "error" and dropped["text"], "the connection was cut mid-answer"
    run = last_run(shared_chats, "dropped")
    message = assistant(outcome)
    # The same final message as if nothing had happened: the replay rebuilt it, with nothing twice.
    assert text_of(message) == run["output"] == "".join(scripted_tokens("hello", SLOW["tokens"]))
    assert message["metadata"] == {"run_id": run["run_id"], "usage": run["usage"]}
    assert run["usage"]["output_tokens"] > 0


def test_use_chat_reloaded_mid_answer_shows_the_history_then_the_answer_going_on(shared_chats: ChatStack) -> None:
    outcome = chat(shared_chats, "reload", "reloaded", input="reload me")
    run = last_run(shared_chats, "reloaded")
    # The new page's history (GET .../messages, useChat's `messages`): the question and the answer so
    # far, under the run's id, which the replay (resumeStreamIsReplay) then rebuilds in place.
    history = outcome.step("messages")["messages"]
    assert [(m["role"], m["id"]) for m in history] == [("user", f"{run['run_id']}-input"), ("assistant", run["run_id"])]
    assert text_of(history[0]) == "reload me" and run["output"].startswith(text_of(history[1]))
    assert text_of(assistant(outcome)) == run["output"] and run["status"] == "completed"


def test_use_chat_after_a_worker_is_killed_mid_answer_has_the_answer_going_on_with_no_reset(
    chats: ChatStack,
) -> None:
    def crash(step: dict[str, Any]) -> None:  # at the first text, while the run waits at its gate
        chats.crash_worker()
        chats.release("crashed")

    outcome = chat(chats, "crash", "crashed", held=True, on_step=crash, timeout=120)
    assert outcome.step("text")
    run = last_run(chats, "crashed")
    assert run["status"] == "completed" and run["attempt"] == 2, "the run was taken over"
    # It went on where it stopped (run.continued): one step, one text part that grew on, as if
    # nothing had happened; a reset would have left a second start of the text.
    message = assistant(outcome)
    assert [part["type"] for part in message["parts"]] == ["step-start", "text"]
    assert text_of(message) == run["output"] == "".join(scripted_tokens("hello", SLOW["tokens"]))
    assert outcome.result["status"] == "ready"


def test_use_chat_stop_with_the_stop_endpoint_cancels_the_run(shared_chats: ChatStack) -> None:
    outcome = chat(shared_chats, "stop", "stopped", held=True)  # stopped while it waits at its gate
    stopped = outcome.step("stopped")
    run = last_run(shared_chats, "stopped")
    assert stopped["http"] == 202 and stopped["body"] == {"run_id": run["run_id"], "status": "cancelling"}
    assert run["status"] == "cancelled"
    answer = text_of(assistant(outcome))
    assert answer and "".join(scripted_tokens("hello", SLOW["tokens"])).startswith(answer)
    # A page reloaded moments later is shown the stopped answer again, ending the same way.
    reconnect = shared_chats.http.get("/v1/ai-sdk/chat/stopped/stream")
    assert reconnect.status_code == 200
    ending = 'data: {"type":"abort","reason":"cancelled by request"}\n\ndata: [DONE]\n\n'
    assert reconnect.text.endswith(ending), reconnect.text[-200:]


def test_websocket_chat_transport_sends_and_resumes_on_the_gateway_socket(shared_chats: ChatStack) -> None:
    outcome = chat(shared_chats, "websocket", "socket", held=True, on_step=lambda step: shared_chats.release("socket"))
    partial = outcome.step("stopped")["text"]
    run = last_run(shared_chats, "socket")
    whole = text_of(assistant(outcome))
    assert partial and whole.startswith(partial) and len(partial) < len(whole)
    assert whole == run["output"] and run["status"] == "completed"


def _approving_chat(
    chats: ChatStack, scenario: str, chat_id: str, agent: str = "approve", **options: Any
) -> tuple[Outcome, dict[str, Any]]:
    token = chats.chat(chat_id, agent=agent)
    outcome = run_node(
        "ai_sdk.mjs",
        scenario,
        {"gateway": chats.url, "chatId": chat_id, "token": token, "input": "clean up", **options},
    )
    return outcome, last_run(chats, chat_id)


def test_use_chat_approves_a_tool_call_with_add_tool_approval_response(shared_chats: ChatStack) -> None:
    for socket in (False, True):
        outcome, run = _approving_chat(shared_chats, "approval", f"approve-{socket}", socket=socket)
        asked = outcome.step("asked")["part"]
        assert asked["type"] == "tool-delete_files" and asked["approval"]["id"] == run["asked"][0]["input_id"]
        assert asked["input"] == {"count": 3}
        message = assistant(outcome)
        tool = next(part for part in message["parts"] if part["type"] == "tool-delete_files")
        assert (tool["state"], tool["output"], tool["approval"]["approved"]) == ("output-available", "deleted", True)
        assert text_of(message) == run["output"] == "Checking. Done: deleted."
        assert run["status"] == "completed" and message["metadata"]["run_id"] == run["run_id"]


def test_use_chat_answers_two_approvals_open_at_once_in_either_order(shared_chats: ChatStack) -> None:
    outcome, run = _approving_chat(shared_chats, "approvals", "two-approvals", agent="parallel")
    asked = outcome.step("asked")["parts"]
    assert sorted(part["approval"]["id"] for part in asked) == sorted(q["input_id"] for q in run["asked"])
    tools = [part for part in assistant(outcome)["parts"] if part["type"] == "tool-delete"]
    shown = sorted((tool["input"]["what"], tool["state"], tool["approval"]["approved"]) for tool in tools)
    assert shown == [("cache", "output-available", False), ("logs", "output-available", True)], tools
    assert text_of(assistant(outcome)) == run["output"] == "Checking. logs deleted, cache kept."
    assert run["status"] == "completed" and run["resumes"] == 1


def test_use_chat_denies_a_tool_call(shared_chats: ChatStack) -> None:
    outcome, run = _approving_chat(shared_chats, "approval", "deny", approved=False)
    assert text_of(assistant(outcome)) == run["output"] == "Checking. Done: kept."


def test_a_denied_tool_call_reaches_use_chat_as_denied_not_as_an_error(shared_chats: ChatStack) -> None:
    # The built-in loop does not run a call a person denied: the SDK has a state for that (it was output-error).
    outcome, run = _approving_chat(
        shared_chats, "approval", "deny-careful", agent="careful", input="What is 12 * (3 + 4)?", approved=False
    )
    tool = next(part for part in assistant(outcome)["parts"] if part["type"] == "tool-calculator")
    assert (tool["state"], tool["approval"]["approved"]) == ("output-denied", False), tool
    assert run["status"] == "completed" and text_of(assistant(outcome)) == run["output"]


def test_use_chat_reloaded_while_the_run_waits_is_asked_again_and_answers(shared_chats: ChatStack) -> None:
    outcome, run = _approving_chat(shared_chats, "approvalAfterReload", "reload-approve")
    assert outcome.step("asked")["part"]["approval"]["id"] == run["asked"][0]["input_id"]
    assert text_of(assistant(outcome)) == run["output"] == "Checking. Done: deleted."


def test_use_chat_after_a_kill_in_a_turn_openai_cannot_continue_drops_that_turn_only(openai_chats: ChatStack) -> None:
    """The worker dies in the model's second turn (after a tool); OpenAI's API cannot continue it, so
    that turn restarts: `reset-step` and the parts kept sent again; the first turn and the tool stay."""
    chats = openai_chats
    token = chats.chat("restart", model="openai:gpt-test")
    options: dict[str, Any] = {
        "gateway": chats.url,
        "chatId": "restart",
        "token": token,
        "input": "what time is it, slowly?",
    }
    options["crashAfterChars"] = 40  # "Checking the clock." is the first turn's
    outcome = run_node("ai_sdk.mjs", "crash", options, on_step=lambda step: chats.crash_worker(), timeout=120)
    assert outcome.step("text")
    run = last_run(chats, "restart")
    assert run["status"] == "completed" and run["attempt"] == 2, "the run was taken over"
    message = assistant(outcome)
    assert text_of(message) == run["output"] and run["output"].startswith("Checking the clock.The time is ")
    kinds = [part["type"] for part in message["parts"]]
    assert kinds == ["step-start", "text", "tool-current_time", "text"], kinds


def test_use_chat_regenerate_and_an_edit_branch_the_chat_and_a_reload_shows_the_branch(shared_chats: ChatStack) -> None:
    """The arithmetic agent answers from the conversation it was given: "What is 2 + 3?" (5), "and
    times ten?" (50). regenerate() asks the second question again after 5 (50, not 500); editing it
    to "and times two?" asks that after 5 (10, not 1000); a reload shows the page's four messages."""
    token = shared_chats.chat("branching", agent="arithmetic")
    options = {"gateway": shared_chats.url, "chatId": "branching", "token": token}
    outcome = run_node("ai_sdk.mjs", "branch", options)
    assert outcome.step("asked")["answer"] == "50"
    assert outcome.step("regenerated") == {"step": "regenerated", "answer": "50", "messages": 4}
    edited = outcome.step("edited")
    assert edited["answer"] == "10"
    shown = [(message["role"], text_of(message)) for message in edited["messages"]]
    assert shown == [("user", "What is 2 + 3?"), ("assistant", "5"), ("user", "and times two?"), ("assistant", "10")]
    reloaded = outcome.step("reloaded")["messages"]
    assert [(message["role"], text_of(message)) for message in reloaded] == shown
    assert [message["id"] for message in reloaded][1::2] == [message["id"] for message in edited["messages"]][1::2]
    # The chat goes on in its branch: a session of its own, forked after the first turn.
    session = shared_chats.session("branching")
    assert session["forked_from"]["event_id"] == session["runs"][0]["finished_seq"]
    assert [run["output"] for run in session["runs"]] == ["5", "10"]
