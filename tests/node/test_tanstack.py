"""TanStack AI's client (`@tanstack/ai-client`, pinned by this folder's lockfile) against tokentail's
AG-UI endpoint, configured as docs/ui-protocols.md says: its resumable SSE (an `id:` on every frame, a
reconnect that sends the same POST with `Last-Event-ID`) through a gateway killed -9, `joinRun(runId)`
on a run half streamed and through a worker killed -9, and an interrupt approved with `resume[]`."""

from collections.abc import Callable
from typing import Any

import pytest

from tests.node.conftest import HELD, SLOW, ChatStack, Outcome, run_node
from tokentail.gateway.app import STATIC
from tokentail.worker.providers.scripted import scripted_tokens

pytestmark = pytest.mark.ag_ui


ANSWER = "".join(scripted_tokens("hello", SLOW["tokens"]))


def client(
    chats: ChatStack,
    scenario: str,
    thread_id: str,
    token: str,
    gateways: list[str],
    on_step: Callable[[dict[str, Any]], None] | None = None,
    **more: Any,
) -> Outcome:
    options = {"gateways": gateways, "threadId": thread_id, "token": token, "input": "hello", **more}
    return run_node("tanstack.mjs", scenario, options, on_step=on_step, timeout=120)


def test_a_reconnect_through_a_gateway_killed_mid_answer_continues_the_run_on_the_other(chats: ChatStack) -> None:
    token = chats.chat("tan-send", **HELD)
    other = chats.stack.gateway()

    def kill_the_gateway(step: dict[str, Any]) -> None:  # at the first text, while the run waits at its gate
        run_id = chats.session("tan-send")["runs"][-1]["run_id"]
        chats.stack.gateways[chats.url].kill()
        chats.gates.release(run_id)

    outcome = client(chats, "send", "tan-send", token, [chats.url, other], on_step=kill_the_gateway)
    result = outcome.result
    assert result["error"] is None, result
    session = chats.session("tan-send", gateway=other)
    [run] = session["runs"]  # the reconnect (the same POST again) made no second run
    assert run["status"] == "completed"
    assert result["text"] == run["output"] == ANSWER, "nothing missing, nothing twice"
    assert result["runIds"] == [run["run_id"]]
    types = result["types"]
    assert types.count("RUN_STARTED") == types.count("TEXT_MESSAGE_START") == types.count("RUN_FINISHED") == 1
    requests = result["requests"]
    assert {(r["method"], r["path"], r["runId"]) for r in requests} == {("POST", "/v1/ag-ui", result["runId"])}
    assert requests[0]["gateway"] == 0 and requests[0]["lastEventId"] is None
    resumed = [r for r in requests if r["lastEventId"] is not None]
    assert resumed and resumed[-1]["gateway"] == 1, "the reconnect went on at the other gateway"


def test_join_run_on_a_run_half_streamed_through_a_worker_killed(chats: ChatStack) -> None:
    token = chats.chat("tan-join", **HELD)

    def crash(step: dict[str, Any]) -> None:
        if step["step"] == "joined":  # the joined stream has text; the run waits at its gate
            chats.crash_worker()
            chats.release("tan-join")

    outcome = client(chats, "join", "tan-join", token, [chats.url], on_step=crash)
    result = outcome.result
    closed = outcome.step("closed")
    assert "TEXT_MESSAGE_CONTENT" in closed["types"] and "RUN_FINISHED" not in closed["types"]
    assert result["error"] is None, result
    [run] = chats.session("tan-join")["runs"]
    assert run["status"] == "completed" and run["attempt"] == 2, "the run was taken over"
    assert result["text"] == run["output"] == ANSWER
    assert result["finished"]["outcome"] == {"type": "success"} and result["runIds"] == [run["run_id"]]
    [join, *reconnects] = result["requests"]
    assert (join["method"], join["path"]) == ("GET", f"/v1/ag-ui?offset=-1&runId={closed['runId']}")
    assert all(r["lastEventId"] is not None for r in reconnects)


def test_an_interrupt_approved_with_resume_goes_on_in_the_same_messages(shared_chats: ChatStack) -> None:
    token = shared_chats.chat("tan-approve", agent="approve")
    outcome = client(shared_chats, "approve", "tan-approve", token, [shared_chats.url])
    result = outcome.result
    assert result["error"] is None, result
    [interrupt] = result["interrupted"]["outcome"]["interrupts"]
    assert interrupt["reason"] == "approval" and interrupt["toolCallId"]
    # The approval names its tool call, which the client shows it on, and is bound to the run the client
    # posted, so the client can resolve it (an interrupt it cannot place, it shows only).
    [shown] = result["shown"]
    binding = shown["metadata"].pop("tanstack:interruptBinding")
    assert shown == {
        "kind": "generic",
        "canResolve": True,
        "metadata": {"kind": "approval", "toolName": "delete_files", "input": {"count": 3}},
    }
    [run] = shared_chats.session("tan-approve")["runs"]
    assert run["status"] == "completed" and run["output"].endswith("Done: deleted.")
    assert result["text"] == run["output"]
    posts = [r for r in result["requests"] if r["method"] == "POST"]
    assert len(posts) == 2 and posts[0]["runId"] != posts[1]["runId"]
    assert binding["interruptedRunId"] == posts[0]["runId"] and binding["interruptId"] == interrupt["id"]


def test_questions_not_tied_to_a_tool_call_are_answered_with_resolve_interrupts(shared_chats: ChatStack) -> None:
    """`ctx.ask` without a `call_id`: each question is an interrupt TanStack AI's client can resolve
    (its binding names the run the client posted), answered with `resolveInterrupts`; the second is
    asked in the run that goes on after the first answer (posted as another client run)."""
    token = shared_chats.chat("tan-ask", agent="two_questions")
    answers = {"Which colour?": "blue", "How many?": 3}
    outcome = client(shared_chats, "answer", "tan-ask", token, [shared_chats.url], answers=answers)
    result = outcome.result
    assert result["asked"] == [
        [{"kind": "generic", "canResolve": True, "message": "Which colour?"}],
        [{"kind": "generic", "canResolve": True, "message": "How many?"}],
    ]
    assert result["error"] is None and result["interruptErrors"] == [], result
    [run] = shared_chats.session("tan-ask")["runs"]
    assert run["status"] == "completed" and run["output"] == "blue it is. 3 of them."
    assert result["text"] == run["output"] and result["finished"]["outcome"] == {"type": "success"}
    posts = [r for r in result["requests"] if r["method"] == "POST"]
    assert len(posts) == 3 and len({r["runId"] for r in posts}) == 3, "the message, then each answer"


def test_a_question_cancelled_with_cancel_interrupts_cancels_the_run(shared_chats: ChatStack) -> None:
    token = shared_chats.chat("tan-cancel", agent="two_questions")
    result = client(shared_chats, "answer", "tan-cancel", token, [shared_chats.url], cancel=True).result
    assert result["asked"] == [[{"kind": "generic", "canResolve": True, "message": "Which colour?"}]]
    assert result["finished"]["outcome"] == {"type": "cancelled"} and result["interruptErrors"] == []
    [run] = shared_chats.session("tan-cancel")["runs"]
    assert run["status"] == "cancelled"


def test_a_message_sent_while_the_gateway_is_down_goes_once_it_is_back(chats: ChatStack) -> None:
    """With the fetch tokentail serves for TanStack AI (/static/tokentail-fetch.js): the gateway is
    killed before the message is sent, and started again on its port once the client has failed to
    reach it; the POST sent again makes the one run, and the client gets its whole answer."""
    token = chats.chat("tan-down", params=SLOW)
    chats.kill_gateway()
    outcome = client(
        chats,
        "refused",
        "tan-down",
        token,
        [chats.url],
        on_step=lambda step: chats.restart_gateway(),
        fetchModule=str(STATIC / "tokentail-fetch.js"),
        retries=30,  # past a gateway's start on a busy machine (the default, 8, waits about 23 s)
    )
    result = outcome.result
    assert [step["step"] for step in outcome.steps] == ["refused"]
    assert result["error"] is None and result["refusals"] >= 1, result
    [run] = chats.session("tan-down")["runs"]
    assert run["status"] == "completed"
    assert result["text"] == run["output"] == ANSWER and result["runIds"] == [run["run_id"]]
    posts = result["requests"]
    assert {(r["method"], r["path"], r["lastEventId"]) for r in posts} == {("POST", "/v1/ag-ui", None)}
    assert len(posts) == result["refusals"] + 1 and len({r["runId"] for r in posts}) == 1, "one message, sent again"
