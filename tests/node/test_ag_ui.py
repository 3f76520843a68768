"""@ag-ui/client (with @ag-ui/core's schemas checking every event) against a tokentail gateway and
worker, through the TokentailAgent the gateway serves (/static/tokentail-ag-ui.js), configured as
docs/ui-protocols.md says: the messages it assembles are the run tokentail recorded."""

from typing import Any

import pytest

from tests.node.conftest import HELD, SLOW, ChatStack, Outcome, run_node
from tests.support.waiting import eventually_sync
from tokentail.gateway.app import STATIC
from tokentail.worker.providers.scripted import scripted_tokens

pytestmark = pytest.mark.ag_ui


ANSWER = "".join(scripted_tokens("hello", SLOW["tokens"]))


def agent(chats: ChatStack, scenario: str, thread_id: str, token: str | None = None, **kwargs: Any) -> Outcome:
    token = token or chats.chat(thread_id, params=SLOW)
    options = {"gateway": chats.url, "threadId": thread_id, "token": token, "input": "hello"}
    outcome = run_node("ag_ui.mjs", scenario, options, **kwargs)
    assert outcome.result["invalid"] == [], "every event validates against @ag-ui/core's schema"
    return outcome


def types(outcome: Outcome) -> list[str]:
    return [event["type"] for event in outcome.events]


def last_run(chats: ChatStack, thread_id: str) -> dict[str, Any]:
    run: dict[str, Any] = chats.session(thread_id)["runs"][-1]
    return run


def answer_of(outcome: Outcome, run: dict[str, Any]) -> str:
    """The thread's messages: the question, then the one answer."""
    messages = outcome.result["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant"], messages
    assert messages[1]["id"].startswith(run["run_id"])
    text: str = messages[1]["content"]
    return text


def test_run_agent_assembles_reasoning_tool_call_result_and_text(shared_chats: ChatStack) -> None:
    outcome = agent(shared_chats, "run", "tools", token=shared_chats.chat("tools", agent="every_event"))
    assert outcome.result["error"] is None
    assert types(outcome) == [
        "RUN_STARTED", "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT",
        "ACTIVITY_SNAPSHOT", "REASONING_MESSAGE_END", "REASONING_END", "TOOL_CALL_START", "TOOL_CALL_ARGS",
        "TOOL_CALL_END", "TOOL_CALL_RESULT", "CUSTOM", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]  # fmt: skip
    run = last_run(shared_chats, "tools")
    assert outcome.events[0]["runId"] == outcome.events[-1]["runId"] == run["run_id"]
    assert [(e["name"], e["value"]) for e in outcome.events if e["type"] == "CUSTOM"] == [
        ("chart", {"points": [1, 2, 3]})
    ]
    user, reasoning, status, call, result, text = outcome.result["messages"]
    # The status is an activity message (AG-UI's place for progress that is not the conversation).
    assert (status["role"], status["activityType"], status["content"]) == (
        "activity",
        "status",
        {"text": "Looking it up"},
    )
    assert user["content"] == "hello"
    assert reasoning == {"id": reasoning["id"], "role": "reasoning", "content": "Thinking it over. Look it up first."}
    assert call["toolCalls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"hello"}'}}
    ]
    assert (result["role"], result["toolCallId"], result["content"]) == ("tool", "call_1", '{"found":3}')
    assert (text["role"], text["content"]) == ("assistant", "Found three.")
    assert outcome.result["lastEventId"] == str(run["finished_seq"])


def test_a_1_0_client_and_a_1_1_client_each_get_their_own_version_and_no_warning(shared_chats: ChatStack) -> None:
    for thread_id, scenario, version in (("older", "run", "1.0"), ("newer", "runNewer", "1.1")):
        outcome = agent(shared_chats, scenario, thread_id)
        assert outcome.result["error"] is None
        assert outcome.events[0]["protocolVersion"] == version and outcome.events[-1]["type"] == "RUN_FINISHED"
        # @ag-ui/client 1.0.0 warns of a producer declaring a newer protocol than its input did (so only
        # where the input said 1.1: this client is itself 1.0), and of anything it strips (nothing).
        newer_notice = "[ag-ui] The producer speaks protocol 1.1; this client speaks 1.0."
        assert [w for w in outcome.result["warnings"] if not w.startswith(newer_notice)] == []
        assert len(outcome.result["warnings"]) == (version == "1.1")
        run = last_run(shared_chats, thread_id)
        assert answer_of(outcome, run) == run["output"]


def test_the_capabilities_document_is_valid_and_declares_resume_and_push(shared_chats: ChatStack) -> None:
    outcome = run_node("ag_ui.mjs", "capabilities", {"gateway": shared_chats.url, "token": shared_chats.chat("caps")})
    assert outcome.result["status"] == 200 and outcome.result["issues"] == [], "valid by @ag-ui/core's schema"
    transport = outcome.result["document"]["transport"]
    assert transport["resumable"] is True and transport["streaming"] is True
    assert "pushNotifications" in transport  # true where the operator allows webhook URLs
    assert outcome.result["document"]["custom"]["tokentail"]["resume"]["join"].startswith("GET /v1/ag-ui?runId=")


def test_a_dropped_connection_is_resumed_by_the_agent_after_its_last_id(shared_chats: ChatStack) -> None:
    outcome = agent(shared_chats, "drop", "dropped")
    cuts = [step["lastEventId"] for step in outcome.steps]
    requests = outcome.result["requests"]
    # Cut twice mid-answer: each time the agent asked again after the last event it had whole.
    assert [(r["method"], r["lastEventId"]) for r in requests] == [("POST", None), ("GET", cuts[0]), ("GET", cuts[1])]
    assert outcome.result["error"] is None, "subscribers saw one stream, not a failed run"
    assert types(outcome).count("RUN_STARTED") == 1 and types(outcome).count("TEXT_MESSAGE_START") == 1
    run = last_run(shared_chats, "dropped")
    assert answer_of(outcome, run) == run["output"] == ANSWER, "nothing missing, nothing twice"
    usage = run["usage"]
    assert outcome.events[-1]["usage"] == [
        {"inputTokens": usage["input_tokens"], "outputTokens": usage["output_tokens"]}
    ]


@pytest.mark.parametrize("via", ["run", "connect"])
def test_a_first_request_the_gateway_is_down_for_is_sent_again_until_it_is_back(chats: ChatStack, via: str) -> None:
    """The gateway is killed before the agent's first request (runAgent's POST; connectAgent's GET of a
    run going, held at its gate): it is started again on its port once the agent has failed to reach
    it, and the agent, sending the request again as it reconnects, gets the whole answer."""
    thread_id = f"down-{via}"
    token = chats.chat(thread_id, input="hello", **HELD) if via == "connect" else chats.chat(thread_id, params=SLOW)
    chats.kill_gateway()

    def back(step: dict[str, Any]) -> None:  # a request failed: the gateway comes back
        chats.restart_gateway()
        if via == "connect":
            chats.release(thread_id)

    options = {
        "gateway": chats.url,
        "threadId": thread_id,
        "token": token,
        "input": "hello",
        "via": via,
        "agentFile": str(STATIC / "tokentail-ag-ui.js"),  # what the gateway serves, while it is down
        "maxReconnects": 30,  # past a gateway's start on a busy machine (the default, 8, waits about 23 s)
    }
    outcome = run_node("ag_ui.mjs", "refused", options, on_step=back, timeout=150)
    assert outcome.result["invalid"] == []
    assert [step["step"] for step in outcome.steps] == ["refused"]
    assert outcome.result["error"] is None and outcome.result["refusals"] >= 1
    [run] = chats.session(thread_id)["runs"]  # a POST sent again made no second run
    assert run["status"] == "completed"
    assert answer_of(outcome, run) == run["output"] == ANSWER
    assert types(outcome).count("RUN_STARTED") == 1 and outcome.events[-1]["outcome"] == {"type": "success"}


def test_connect_agent_on_a_page_loaded_mid_answer_catches_up_and_follows(shared_chats: ChatStack) -> None:
    token = shared_chats.chat("elsewhere", params=SLOW, input="hello")  # asked on another device
    eventually_sync(
        lambda: shared_chats.session("elsewhere")["transcript"][-1]["role"] == "assistant", what="some text"
    )
    outcome = agent(shared_chats, "connect", "elsewhere", token=token)
    assert types(outcome)[:2] == ["RUN_STARTED", "MESSAGES_SNAPSHOT"]
    # connectAgent() declares the client's version too (?protocolVersion=): no newer one is declared to it.
    assert outcome.events[0]["protocolVersion"] == "1.0" and outcome.result["warnings"] == []
    run = last_run(shared_chats, "elsewhere")
    assert answer_of(outcome, run) == run["output"] == ANSWER
    assert outcome.result["messages"][0] == {"id": f"{run['run_id']}-input", "role": "user", "content": "hello"}
    assert outcome.events[-1]["outcome"] == {"type": "success"}


def test_after_a_worker_is_killed_mid_answer_the_message_goes_on_with_no_snapshot(chats: ChatStack) -> None:
    def crash(step: dict[str, Any]) -> None:  # at the first text, while the run waits at its gate
        chats.crash_worker()
        chats.release("crashed")

    token = chats.chat("crashed", **HELD)
    outcome = agent(chats, "crash", "crashed", token=token, on_step=crash, timeout=120)
    run = last_run(chats, "crashed")
    assert run["status"] == "completed" and run["attempt"] == 2, "the run was taken over"
    # run.continued: the same message goes on, nothing is replaced.
    assert "MESSAGES_SNAPSHOT" not in types(outcome) and types(outcome).count("TEXT_MESSAGE_START") == 1
    assert answer_of(outcome, run) == run["output"] == ANSWER


def test_abort_run_cancels_the_run_in_tokentail(shared_chats: ChatStack) -> None:
    outcome = agent(
        shared_chats, "stop", "stopped", token=shared_chats.chat("stopped", **HELD)
    )  # stopped while it waits at its gate
    stopped = outcome.step("stopped")
    run = last_run(shared_chats, "stopped")
    assert stopped["http"] == 202 and stopped["body"] == {"run_id": run["run_id"], "status": "cancelling"}
    assert stopped["named"] == run["run_id"]  # the stop named the run the agent was shown (RUN_STARTED)
    eventually_sync(lambda: last_run(shared_chats, "stopped")["status"] == "cancelled", what="the run cancelled")
    assert outcome.events[-1]["type"] == "RUN_ERROR" and outcome.events[-1]["code"] == "abort"  # the client's own


def _interrupted(outcome: Outcome, run: dict[str, Any]) -> dict[str, Any]:
    interrupt: dict[str, Any] = outcome.step("interrupted")["outcome"]["interrupts"][0]
    question = run["asked"][0]
    assert (interrupt["id"], interrupt["reason"], interrupt["message"]) == (
        question["input_id"],
        "approval",
        "Delete 3 files?",
    )
    assert interrupt["toolCallId"] == question["call_id"] and interrupt["responseSchema"] == question["schema"]
    return interrupt


def test_an_interrupt_is_resumed_with_run_agent_and_the_run_goes_on(shared_chats: ChatStack) -> None:
    outcome = agent(shared_chats, "approval", "approve", token=shared_chats.chat("approve", agent="approve"))
    run = last_run(shared_chats, "approve")
    _interrupted(outcome, run)
    assert outcome.result["firstError"] is None and outcome.result["error"] is None
    kinds = types(outcome)
    assert kinds.count("RUN_STARTED") == 2 and kinds.count("RUN_FINISHED") == 2  # interrupted, then done
    assert outcome.events[-1]["outcome"] == {"type": "success"} and outcome.events[-1]["runId"] == run["run_id"]
    result = next(e for e in outcome.events if e["type"] == "TOOL_CALL_RESULT")
    assert result["toolCallId"] == run["asked"][0]["call_id"] and result["content"] == "deleted"
    assert run["status"] == "completed" and run["output"] == "Checking. Done: deleted."


def test_two_interrupts_open_at_once_are_resumed_together_with_run_agent(shared_chats: ChatStack) -> None:
    options = {
        "gateway": shared_chats.url,
        "threadId": "parallel",
        "token": shared_chats.chat("parallel", agent="parallel"),
    }
    outcome = run_node("ag_ui.mjs", "approval", options | {"input": "clean up", "denied": ["Delete cache?"]})
    run = last_run(shared_chats, "parallel")
    interrupts = outcome.step("interrupted")["outcome"]["interrupts"]
    assert [(i["id"], i["message"]) for i in interrupts] == [(q["input_id"], q["prompt"]) for q in run["asked"]]
    assert outcome.result["firstError"] is None and outcome.result["error"] is None and not outcome.result["invalid"]
    kinds = types(outcome)
    assert kinds.count("RUN_STARTED") == 2 and kinds.count("RUN_FINISHED") == 2  # interrupted once, then done
    assert run["status"] == "completed" and run["output"] == "Checking. logs deleted, cache kept."
    messages = outcome.result["messages"]
    assert sorted(m["content"] for m in messages if m["role"] == "tool") == ["deleted", "kept"]
    assert "".join(m.get("content") or "" for m in messages if m["role"] == "assistant") == run["output"]


def test_a_page_that_connects_while_the_run_waits_gets_the_interrupt_and_answers_it(shared_chats: ChatStack) -> None:
    token = shared_chats.chat("elsewhere", agent="approve", input="clean up")  # asked from another device
    eventually_sync(lambda: shared_chats.session("elsewhere")["status"] == "waiting_for_input", what="the question")
    outcome = agent(shared_chats, "approvalElsewhere", "elsewhere", token=token)
    run = last_run(shared_chats, "elsewhere")
    _interrupted(outcome, run)
    assert types(outcome)[:2] == ["RUN_STARTED", "MESSAGES_SNAPSHOT"]
    assert outcome.result["error"] is None and run["output"] == "Checking. Done: deleted."
    texts = [m["content"] for m in outcome.result["messages"] if m["role"] == "assistant" and m.get("content")]
    assert "".join(texts) == "Checking. Done: deleted."


def test_after_a_kill_in_a_turn_openai_cannot_continue_a_snapshot_drops_that_turn_only(openai_chats: ChatStack) -> None:
    chats = openai_chats
    token = chats.chat("restart", model="openai:gpt-test")
    options: dict[str, Any] = {
        "gateway": chats.url,
        "threadId": "restart",
        "token": token,
        "input": "what time is it, slowly?",
    }
    options["crashInMessage"] = 2  # in the second turn's text, after the tool
    outcome = run_node("ag_ui.mjs", "crash", options, on_step=lambda step: chats.crash_worker(), timeout=120)
    assert outcome.result["invalid"] == []
    run = last_run(chats, "restart")
    assert run["status"] == "completed" and run["attempt"] == 2, "the run was taken over"
    assert "MESSAGES_SNAPSHOT" in types(outcome), "the cut turn's message is dropped by a snapshot"
    texts = [m.get("content") for m in outcome.result["messages"] if m["role"] == "assistant"]
    assert "".join(text or "" for text in texts) == run["output"], texts


def test_a_thread_asked_again_and_edited_branches_and_a_page_loading_it_shows_the_branch(
    shared_chats: ChatStack,
) -> None:
    """As useChat's regenerate and edit (test_ai_sdk.py), with the messages an AG-UI page sends."""
    token = shared_chats.chat("branching", agent="arithmetic")
    outcome = agent(shared_chats, "branch", "branching", token=token)
    assert [outcome.step(name)["answer"] for name in ("first", "asked", "regenerated", "edited")] == [
        "5",
        "50",
        "50",
        "10",
    ]
    shown = [(message["role"], message["content"]) for message in outcome.step("edited")["messages"]]
    assert shown == [("user", "What is 2 + 3?"), ("assistant", "5"), ("user", "and times two?"), ("assistant", "10")]
    reloaded = outcome.step("reloaded")
    assert reloaded["error"] is None
    assert [(message["role"], message["content"]) for message in reloaded["messages"]] == shown
