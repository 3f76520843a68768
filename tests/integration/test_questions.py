"""A run that asks a person: the question in the stream and the session, the answer once, the run
going on; through the gateway and a worker."""

import asyncio
import json
from typing import Any

import httpx2
import pytest
import websockets
from click.testing import CliRunner
from pydantic import SecretStr

from tests.clients.sse_client import read_events
from tests.fixtures.stack import Gateway
from tests.integration.test_auth import KEY_A, KEY_B, SECRET
from tests.support.sessions import waiting_for_input
from tests.support.waiting import eventually, scaled
from tokentail import chat
from tokentail.cli import main

AGENTS = {
    "approve": "tests.agents.asking_agent:approval",
    "two": "tests.agents.asking_agent:two_questions",
    "expiring": "tests.agents.asking_agent:expiring",
    "expiring_to_default": "tests.agents.asking_agent:expiring_to_default",
    "careful": "tests.agents.asking_agent:CAREFUL",
    "parallel": "tests.agents.asking_agent:parallel_approvals",
}


@pytest.fixture
async def gateway(start_gateway: Any, start_worker: Any) -> Gateway:
    """A gateway and a worker that know the asking agents."""
    started: Gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    return started


async def test_an_approval_is_asked_answered_once_and_the_run_goes_on(gateway: Gateway) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        made = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()
        sid, rid = made["session_id"], made["run_id"]
        state = await waiting_for_input(client, f"/v1/sessions/{sid}")
        question = state["pending_input"]
        assert (question["run_id"], question["kind"], question["prompt"]) == (rid, "approval", "Delete 3 files?")
        assert state["transcript"][-1]["content"] == "Checking. "
        url = f"/v1/sessions/{sid}/runs/{rid}/input"
        bad = await client.post(url, json={"input_id": question["input_id"], "answer": {"approved": "yes"}})
        assert bad.status_code == 422 and "approved" in bad.json()["error"]["message"]
        unknown = await client.post(url, json={"input_id": "in_nope", "answer": {"approved": True}})
        assert unknown.status_code == 404
        answered = await client.post(url, json={"input_id": question["input_id"], "answer": {"approved": True}})
        assert answered.status_code == 202, answered.text
        again = await client.post(url, json={"input_id": question["input_id"], "answer": {"approved": False}})
        assert again.status_code == 409 and again.json()["error"]["type"] == "input_not_pending"
        received = await read_events(client, made["events_url"])
    kinds = [kind for _, kind, _ in received.events]
    assert kinds == [
        "run.queued", "run.started", "message.delta", "tool.started", "input.required",
        "input.received", "run.started", "tool.completed", "message.delta", "run.completed",
    ]  # fmt: skip
    assert received.ids == list(range(1, len(kinds) + 1))
    data = {kind: d for _, kind, d in received.events}
    assert data["input.required"]["call_id"] == data["tool.started"]["call_id"] == data["tool.completed"]["call_id"]
    assert data["input.received"]["answer"] == {"approved": True}
    assert data["tool.completed"]["result"] == "deleted"
    assert data["run.completed"]["output"] == "Checking. Done: deleted."


async def test_an_answer_whose_event_would_pass_the_event_bound_is_refused_and_not_recorded(
    gateway: Gateway,
) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        made = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()
        sid, rid = made["session_id"], made["run_id"]
        input_id = (await waiting_for_input(client, f"/v1/sessions/{sid}"))["pending_input"]["input_id"]
        url = f"/v1/sessions/{sid}/runs/{rid}/input"
        huge = {"input_id": input_id, "answer": {"approved": True, "note": "x" * 900_000}}  # under the body bound
        refused = await client.post(url, json=huge)
        assert (refused.status_code, refused.json()["error"]["type"]) == (413, "input_too_large")
        assert "262144" in refused.json()["error"]["message"]
        answered = await client.post(url, json={"input_id": input_id, "answer": {"approved": True}})
        assert answered.status_code == 202, answered.text  # the refusal recorded nothing
        received = await read_events(client, made["events_url"])
    assert [d["answer"] for _, kind, d in received.events if kind == "input.received"] == [{"approved": True}]


async def test_questions_in_a_row_each_replay_what_came_before(gateway: Gateway) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        made = (await client.post("/v1/sessions", json={"input": "go", "agent": "two"})).json()
        sid, rid = made["session_id"], made["run_id"]
        url = f"/v1/sessions/{sid}/runs/{rid}/input"
        first = (await waiting_for_input(client, f"/v1/sessions/{sid}"))["pending_input"]
        assert (await client.post(url, json={"input_id": first["input_id"], "answer": "green"})).status_code == 422
        assert (await client.post(url, json={"input_id": first["input_id"], "answer": "blue"})).status_code == 202

        async def second_question() -> dict[str, Any]:
            pending: dict[str, Any] | None = (await client.get(f"/v1/sessions/{sid}")).json()["pending_input"]
            assert pending is not None and pending["input_id"] != first["input_id"]
            return pending

        second = await eventually(second_question, what="the second question")
        assert (await client.get(f"/v1/sessions/{sid}")).json()["transcript"][-1]["content"] == "blue it is. "
        assert (await client.post(url, json={"input_id": second["input_id"], "answer": 0})).status_code == 422
        assert (await client.post(url, json={"input_id": second["input_id"], "answer": 3})).status_code == 202
        received = await read_events(client, made["events_url"])
    texts = [d["text"] for _, kind, d in received.events if kind == "message.delta"]
    assert "".join(texts) == "blue it is. 3 of them."  # nothing streamed twice by the replays
    assert received.events[-1][2]["output"] == "blue it is. 3 of them."


async def test_cancel_while_waiting_ends_the_run_and_the_question(gateway: Gateway) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        made = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()
        sid, rid = made["session_id"], made["run_id"]
        question = (await waiting_for_input(client, f"/v1/sessions/{sid}"))["pending_input"]
        cancelled = await client.post(f"/v1/sessions/{sid}/cancel")
        assert cancelled.json() == {"run_id": rid, "status": "cancelled"}  # no worker held it: at once
        late = await client.post(
            f"/v1/sessions/{sid}/runs/{rid}/input",
            json={"input_id": question["input_id"], "answer": {"approved": True}},
        )
        assert late.status_code == 409
        received = await read_events(client, made["events_url"])
        state = (await client.get(f"/v1/sessions/{sid}")).json()
    assert [kind for _, kind, _ in received.events][-2:] == ["input.required", "run.cancelled"]
    assert state["status"] == "idle" and state["pending_input"] is None
    assert state["runs"][0]["status"] == "cancelled"


async def test_an_unanswered_question_fails_the_run_when_it_expires(start_gateway: Any, start_worker: Any) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS, lease_ms=1000)  # reapers look every third of a lease
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        made = (await client.post("/v1/sessions", json={"input": "wait", "agent": "expiring"})).json()
        received = await read_events(client, made["events_url"])
    assert [kind for _, kind, _ in received.events][-2:] == ["input.required", "run.failed"]
    assert received.events[-1][2]["error"]["type"] == "input_expired"


async def test_an_expired_question_can_take_a_default_answer(start_gateway: Any, start_worker: Any) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS, lease_ms=1000)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        made = (await client.post("/v1/sessions", json={"input": "wait", "agent": "expiring_to_default"})).json()
        received = await read_events(client, made["events_url"])
    kinds = [kind for _, kind, _ in received.events]
    assert kinds[-5:] == ["input.required", "input.received", "run.started", "message.delta", "run.completed"]
    assert received.events[-1][2]["output"] == "Got: no answer"


async def test_a_question_is_answered_over_the_websocket(gateway: Gateway) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        made = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()
        sid, rid = made["session_id"], made["run_id"]
        async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/v1/sessions/{sid}/ws") as ws:
            messages: list[dict[str, Any]] = []
            while not messages or messages[-1].get("event") != "input.required":
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), scaled(10))))
            question = messages[-1]["data"]
            await ws.send(json.dumps({"type": "input", "run_id": rid, "input_id": question["input_id"], "answer": "x"}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))
            assert refused["type"] == "error" and refused["error"]["type"] == "validation_error"
            answer = {"type": "input", "run_id": rid, "input_id": question["input_id"], "answer": {"approved": False}}
            await ws.send(json.dumps(answer))
            while messages[-1].get("event") != "run.completed":
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), scaled(10))))
    acks = [m for m in messages if m.get("type") == "ack"]
    assert acks == [{"type": "ack", "request": "input", "run_id": rid, "input_id": question["input_id"], "event_id": 6}]
    assert messages[-1]["data"]["output"] == "Checking. Done: kept."


async def test_tokentail_chat_asks_the_question_at_the_terminal(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat, "_interactive", lambda: True)
    # A first answer the schema refuses is asked again (the choice prompt refuses "green" itself).
    args = ["chat", "--url", gateway.url, "--agent", "two", "go"]
    result = await asyncio.to_thread(CliRunner().invoke, main, args, input="green\nblue\n0\n3\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "blue it is. 3 of them."
    assert "Which colour?" in result.stderr and "How many?" in result.stderr
    assert "[the answer does not match the question's schema: 0 is less than the minimum of 1]" in result.stderr


async def test_the_agent_loop_asks_before_a_tool_that_needs_approval(gateway: Gateway) -> None:
    outputs = {}
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        for approved in (True, False):
            body = {"input": "What is 6 * 7?", "agent": "careful", "params": {"tokens_per_second": 0}}
            made = (await client.post("/v1/sessions", json=body)).json()
            sid, rid = made["session_id"], made["run_id"]
            question = (await waiting_for_input(client, f"/v1/sessions/{sid}"))["pending_input"]
            assert question["kind"] == "approval" and question["prompt"] == 'Run calculator {"expression": "6 * 7"}?'
            answer = {"input_id": question["input_id"], "answer": {"approved": approved}}
            assert (await client.post(f"/v1/sessions/{sid}/runs/{rid}/input", json=answer)).status_code == 202
            received = await read_events(client, made["events_url"])
            kinds = [kind for _, kind, _ in received.events]
            ended = "tool.completed" if approved else "tool.failed"
            assert kinds.count("tool.started") == 1 and kinds.index("input.required") < kinds.index(ended)
            tool = next(d for _, k, d in received.events if k == ended)
            assert tool["call_id"] == question["call_id"]
            assert tool.get("result") == 42 if approved else tool["error"] == "a person denied this call"
            outputs[approved] = received.events[-1][2]
    assert "42" in outputs[True]["output"]
    assert outputs[True]["usage"]["output_tokens"] > 0  # the model call before the question counts too


async def test_a_chat_token_answers_from_another_device_a_read_token_may_not(
    start_gateway: Any, start_worker: Any
) -> None:
    keys = {"api_keys": SecretStr(f"acme:{KEY_A},beta:{KEY_B}"), "secret": SecretStr(SECRET)}
    gateway = await start_gateway(agents=AGENTS, **keys)
    await start_worker(agents=AGENTS)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        body = {"input": "clean up", "agent": "approve", "token_scope": "chat"}
        made = (await client.post("/v1/sessions", json=body, headers={"Authorization": f"Bearer {KEY_A}"})).json()
        sid, rid = made["session_id"], made["run_id"]
        chat_token = made["stream_token"]
        read = await client.post(
            f"/v1/sessions/{sid}/token", json={"scope": "read"}, headers={"Authorization": f"Bearer {chat_token}"}
        )
        read_token = read.json()["stream_token"]
        pending = (await waiting_for_input(client, f"/v1/sessions/{sid}", chat_token))["pending_input"]
        url = f"/v1/sessions/{sid}/runs/{rid}/input"
        answer = {"input_id": pending["input_id"], "answer": {"approved": True}}
        for credential, status in ((read_token, 403), (KEY_B, 404), (chat_token, 202)):
            response = await client.post(url, json=answer, headers={"Authorization": f"Bearer {credential}"})
            assert response.status_code == status, response.text


@pytest.mark.ai_sdk
async def test_a_chat_sent_with_one_of_two_open_approvals_is_refused_and_answers_nothing(gateway: Gateway) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=scaled(30)) as client:
        made = (
            await client.post("/v1/sessions", json={"chat_id": "c", "token_scope": "chat", "agent": "parallel"})
        ).json()
        headers = {"Authorization": f"Bearer {made['stream_token']}"}
        user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "clean up"}]}
        asked = await client.post("/v1/ai-sdk/chat", json={"id": "c", "messages": [user]}, headers=headers)
        assert asked.status_code == 200 and '"finishReason":"tool-calls"' in asked.text  # it ends at both questions
        state = await waiting_for_input(client, f"/v1/sessions/{made['session_id']}")
        first, second = (q["input_id"] for q in state["pending_inputs"])
        parts = [
            {
                "type": "tool-delete",
                "toolCallId": "c1",
                "state": "approval-responded",
                "approval": {"id": first, "approved": True},
            },
            {"type": "tool-delete", "toolCallId": "c2", "state": "approval-requested", "approval": {"id": second}},
        ]
        assistant = {"id": "a1", "role": "assistant", "parts": parts}
        sent = await client.post("/v1/ai-sdk/chat", json={"id": "c", "messages": [user, assistant]}, headers=headers)
        assert sent.status_code == 422 and second in sent.json()["error"]["message"]
        still = (await client.get(f"/v1/sessions/{made['session_id']}")).json()
        assert [q["input_id"] for q in still["pending_inputs"]] == [first, second]  # nothing was answered
