"""@langchain/langgraph-sdk 1.15's v2 client (`client.threads.stream`, the Agent Streaming Protocol)
against a tokentail gateway and worker at /langgraph: run.start, the messages channel, a cut stream
resumed by Last-Event-ID (on the same gateway or another), input.requested and input.respond,
input.inject as a steer, a child run's lifecycle, state.listCheckpoints and state.fork, and what is refused."""

import re
from typing import Any

import pytest

from tests.node.conftest import SLOW, ChatStack, Outcome, run_node
from tokentail.worker.providers.scripted import scripted_tokens

pytestmark = pytest.mark.langgraph

ANSWER = "".join(scripted_tokens("hello", SLOW["tokens"]))


def v2(chats: ChatStack, scenario: str, thread_id: str, token: str | None = None, **options: Any) -> Outcome:
    token = token or chats.chat(thread_id, params=SLOW)
    opts = {"gateway": chats.url, "threadId": thread_id, "token": token, **options}
    return run_node("langgraph_v2.mjs", scenario, opts, timeout=120)


def last_run(chats: ChatStack, thread_id: str) -> dict[str, Any]:
    run: dict[str, Any] = chats.session(thread_id)["runs"][-1]
    return run


def methods(outcome: Outcome, method: str, namespace: list[str] | None = None) -> list[dict[str, Any]]:
    return [
        event
        for event in outcome.result["events"]
        if event["method"] == method and (namespace is None or event["namespace"] == namespace)
    ]


def ids_unique(outcome: Outcome) -> None:
    ids = [event["event_id"] for event in outcome.result["events"] if event["event_id"] is not None]
    assert len(ids) == len(set(ids)), "the client took each event once"


def test_run_start_streams_the_answer_whole_and_once_with_the_session_seq(shared_chats: ChatStack) -> None:
    outcome = v2(shared_chats, "stream", "plain")
    run = last_run(shared_chats, "plain")
    assert outcome.result["started"] == {"run_id": run["run_id"]}
    assert [m["text"] for m in outcome.result["messages"]] == [run["output"]] == [ANSWER]
    assert outcome.result["messages"][0]["id"] == f"ai:{run['run_id']}:{run['queued_seq'] + 2}"  # state.py's id
    lifecycle = [e["event"] for e in methods(outcome, "lifecycle", [])]
    assert lifecycle == ["running", "completed"]
    ids_unique(outcome)
    for event in outcome.result["events"]:
        if event["event_id"]:
            assert re.fullmatch(rf"\d+-{event['seq']}(\.\d+)?", event["event_id"]), event
    assert methods(outcome, "lifecycle", [])[-1]["seq"] == run["finished_seq"], "seq is the session's seq"
    # values: the thread's state after the run, as state.get (and GET /threads/{tid}/state) has it.
    messages = outcome.result["values"]["messages"]
    assert [m["type"] for m in messages] == ["human", "ai"] and messages[1]["content"] == ANSWER
    state = outcome.result["state"]["values"]["messages"]
    assert [(m["type"], m["id"], m["content"]) for m in state] == [(m["type"], m["id"], m["content"]) for m in messages]
    assert outcome.result["tree"]["tree"]["status"] == "completed"


@pytest.mark.parametrize("where", ["same", "other"])
def test_a_cut_stream_resumes_after_its_last_event_id_with_no_gap_and_no_duplicate(
    chats: ChatStack, where: str
) -> None:
    thread_id = f"cut-{where}"
    resume_at = chats.url if where == "same" else chats.stack.gateway()
    outcome = v2(chats, "stream", thread_id, cutAfter=5, resumeAt=resume_at)
    [cut] = outcome.steps
    cursor = cut["lastEventId"]
    assert re.fullmatch(r"\d+-\d+", cursor)
    run = last_run(chats, thread_id)
    assert [m["text"] for m in outcome.result["messages"]] == [run["output"]] == [ANSWER], "the text whole, once"
    [cut_at] = [c for c in outcome.result["connections"] if c["cut"]]
    [resumed] = [c for c in outcome.result["connections"] if c["lastEventId"] is not None]
    assert resumed["lastEventId"] == cursor and resumed["filter"] == cut_at["filter"]
    assert resumed["url"].startswith(resume_at)
    had = [frame["event_id"] for frame in cut_at["frames"]]
    got = [frame["event_id"] for frame in resumed["frames"]]
    assert not set(had) & set(got), "nothing the cut stream had is sent again"
    assert resumed["frames"][0]["seq"] == int(cursor.split("-")[1]) + 1, "it goes on right after the id"

    def text(frames: list[dict[str, Any]]) -> str:
        deltas = [f["params"]["data"] for f in frames if f["method"] == "messages"]
        return "".join(d["delta"]["text"] for d in deltas if d["event"] == "content-block-delta")

    upto = had.index(cursor) + 1  # what the client had whole when it was cut
    assert text(cut_at["frames"][:upto]) + text(resumed["frames"]) == ANSWER, "no gap, no duplicate on the wire"


def test_the_websocket_transport_streams_and_resubscribes_after_its_socket_drops(shared_chats: ChatStack) -> None:
    outcome = v2(shared_chats, "websocket", "socket", dropSocket=True)
    run = last_run(shared_chats, "socket")
    assert outcome.steps == [{"step": "dropped"}] and outcome.result["sockets"] >= 2
    assert [m["text"] for m in outcome.result["messages"]] == [run["output"]] == [ANSWER]
    ids_unique(outcome)
    assert [e["event"] for e in methods(outcome, "lifecycle", [])] == ["running", "completed"]


@pytest.mark.parametrize("where", ["same", "other"])
def test_a_socket_s_subscription_reconnect_resumes_after_its_last_event_id(chats: ChatStack, where: str) -> None:
    thread_id = f"socket-cut-{where}"
    resume_at = chats.url if where == "same" else chats.stack.gateway()
    result = v2(chats, "socketResume", thread_id, cutAfter=5, resumeAt=resume_at).result
    run = last_run(chats, thread_id)
    assert result["started"] == {"run_id": run["run_id"]} and result["reconnected"]["restored"] is True
    had, got = [e["event_id"] for e in result["first"]], [e["event_id"] for e in result["second"]]
    assert had[-1] == result["cursor"] and not set(had) & set(got), "nothing sent twice"
    assert result["second"][0]["seq"] == int(result["cursor"].split("-")[1]) + 1

    def text(events: list[dict[str, Any]]) -> str:
        deltas = [e["params"]["data"] for e in events if e["method"] == "messages"]
        return "".join(d["delta"]["text"] for d in deltas if d["event"] == "content-block-delta")

    assert text(result["first"]) + text(result["second"]) == run["output"] == ANSWER, "no gap, no duplicate"


def test_an_interrupt_arrives_as_input_requested_and_input_respond_resumes_the_run(shared_chats: ChatStack) -> None:
    token = shared_chats.chat("asks", agent="approve")
    outcome = v2(shared_chats, "interrupt", "asks", token=token, assistantId="approve", response={"approved": True})
    assert [step["step"] for step in outcome.steps] == ["interrupted", "responded", "done"]
    run = last_run(shared_chats, "asks")
    [interrupt] = outcome.result["interrupts"]
    question = run["asked"][0]
    assert interrupt["interruptId"] == question["input_id"] and interrupt["namespace"] == []
    assert interrupt["payload"]["prompt"] == question["prompt"] and interrupt["payload"]["kind"] == "approval"
    assert run["status"] == "completed" and run["answers"] == {question["input_id"]: {"approved": True}}
    answered = methods(outcome, "input.answered")
    assert [e["data"]["interrupt_ids"] for e in answered] == [[question["input_id"]]]
    lifecycle = [e["event"] for e in methods(outcome, "lifecycle", [])]
    assert lifecycle[-1] == "completed" and "interrupted" in lifecycle
    # The messages projection opened after the answer: the run from its start, each message once.
    assert "".join(m["text"] for m in outcome.result["messages"]) == run["output"] == "Checking. Done: deleted."
    ids_unique(outcome)


def test_input_inject_steers_the_active_run(shared_chats: ChatStack) -> None:
    outcome = v2(shared_chats, "inject", "steered", steer="and say it in French")
    run = last_run(shared_chats, "steered")
    assert outcome.result["injected"] is None  # the SDK's inject() returns nothing
    steers = outcome.result["steers"]
    assert [s["status"] for s in steers] == ["accepted", "applied"]
    assert steers[0]["input"] == "and say it in French"
    assert [s["input"] for s in run["steers"]] == ["and say it in French"]
    assert steers[1]["steer_id"] == steers[0]["steer_id"] == run["steers"][0]["steer_id"]
    assert run["status"] == "completed"


def test_a_child_run_of_the_team_agent_shows_on_lifecycle_in_its_namespace(shared_chats: ChatStack) -> None:
    outcome = v2(shared_chats, "team", "team", token=shared_chats.chat("team"), assistantId="team")
    session = shared_chats.session("team")
    [child] = [run for run in session["runs"] if run.get("parent_run_id")]
    namespace = [f"{child['agent']}:{child['run_id']}"]
    lifecycle = methods(outcome, "lifecycle", namespace)
    started, ended = lifecycle[0], lifecycle[-1]
    assert started["data"]["event"] == "started" and started["data"]["graph_name"] == child["agent"]
    assert started["data"]["cause"] == {"type": "toolCall", "tool_call_id": child["call_id"]}
    assert ended["data"]["event"] == "completed"
    root = [e["event"] for e in methods(outcome, "lifecycle", [])]
    assert root[0] == "running" and root[-1] == "completed"
    # The parent's call that spawned it, and the child's own call, each in its namespace (the tools channel).
    calls = [(t["namespace"], t["tool_call_id"]) for t in outcome.result["tools"] if t["event"] == "tool-started"]
    assert ([], child["call_id"]) in calls and any(ns == namespace for ns, _ in calls)
    # The child's messages are in its namespace; the root's answer quotes the child's.
    texts = {tuple(m["namespace"]): m["text"] for m in outcome.result["messages"]}
    assert texts[()] == session["runs"][0]["output"] and texts[tuple(namespace)] in texts[()]
    tree = outcome.result["tree"]["tree"]
    assert [node["namespace"] for node in tree["children"]] == [namespace]
    ids_unique(outcome)


def test_what_is_not_served_is_refused_with_its_error(shared_chats: ChatStack) -> None:
    outcome = v2(shared_chats, "refused", "refusals")
    result = outcome.result
    assert result["respondNothing"]["code"] in ("no_such_run", "no_such_interrupt")
    assert result["unknownChannel"]["status"] == 422


def test_list_checkpoints_and_fork_from_one_go_on_in_a_branch(shared_chats: ChatStack) -> None:
    outcome = v2(shared_chats, "checkpoints", "v2-checkpoints")
    result = outcome.result
    listed = result["listed"]
    # The run's end, its input taken in, the thread before it: newest first, each naming its parent.
    assert [(c["step"], c.get("node_name"), c["metadata"]["source"]) for c in listed] == [
        (1, "agent", "loop"),
        (0, None, "input"),
        (-1, None, "input"),
    ]
    assert [c["metadata"]["parent_id"] for c in listed] == [listed[1]["id"], listed[2]["id"], None]
    run_id = result["started"]["run_id"]
    assert result["forked"] == {"run_id": run_id, "thread_id": "v2-checkpoints"}  # the run, going on in a branch
    after = result["after"]
    ends = [c for c in after if c["metadata"]["parent_id"] == listed[1]["id"]]
    assert [c["id"] for c in ends][1:] == [listed[0]["id"]] and "@" in ends[0]["id"]  # both ends: the branch's newest
    assert result["unknown"]["code"] == "invalid_argument"
