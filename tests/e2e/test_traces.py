"""One trace per run, across real processes: gateways and workers export over OTLP/HTTP to a receiver in
the test (tests/servers/otlp_receiver.py), and each test finds every span of its run in that one trace, where
it belongs: parents and links by id, services, and no tool span twice."""

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx2
import pytest

from tests.clients.sse_client import read_events
from tests.e2e.conftest import Stack
from tests.e2e.fake_llm_server import API_KEY
from tests.e2e.watcher import killed_in_second_turn
from tests.servers.otlp_receiver import OtlpReceiver, Span, otlp_receiver
from tests.support.sessions import waiting_for_input
from tokentail.shared.plumbing import tracing

GATEWAY, WORKER = tracing.GATEWAY, tracing.WORKER
AGENTS = json.dumps(
    {
        "clock": "tests.agents.traced_agents:CLOCK",
        "clock_claude": "tests.agents.traced_agents:CLOCK_CLAUDE",
        "approve": "tests.agents.asking_agent:approval",
    }
)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as receiver:
        yield receiver


def _traced(stack: Stack, receiver: OtlpReceiver, llm_url: str = "", **env: str) -> None:
    stack.env |= receiver.env() | {"TOKENTAIL_AGENTS": AGENTS, **env}
    stack.env.pop("OTEL_SERVICE_NAME", None)  # the services' own names
    if llm_url:
        stack.env |= {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": f"{llm_url}/v1"}
        stack.env |= {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": llm_url}


async def _run_trace(receiver: OtlpReceiver, agent: str, ended: int = 1) -> list[Span]:
    """The trace of the one run, once its span came (`ended` runs' spans) and the trace is whole: a root,
    and every span's parent in it. A process exports its spans in the order they ended, so the run's
    span, which its worker ends last, comes after the rest of that worker's."""
    name = f"invoke_agent {agent}"
    await asyncio.to_thread(receiver.wait_for, lambda spans: sum(s.name == name for s in spans) >= ended)
    (run,) = receiver.named(name)

    def whole(spans: list[Span]) -> bool:
        ids = {s.span_id for s in spans if s.trace_id == run.trace_id}
        parents = {s.parent_id for s in spans if s.trace_id == run.trace_id}
        return "" in parents and parents - {""} <= ids

    await asyncio.to_thread(receiver.wait_for, whole)
    return receiver.trace(run.trace_id)


def _one(spans: list[Span], name: str, **where: str) -> Span:
    found = [s for s in spans if s.name == name and all(getattr(s, k) == v for k, v in where.items())]
    assert len(found) == 1, f"{len(found)} spans {name} {where}: {[(s.name, s.service, s.scope) for s in spans]}"
    return found[0]


def _children(spans: list[Span], parent: Span) -> list[Span]:
    return [s for s in spans if s.parent_id == parent.span_id]


def _attempts(spans: list[Span]) -> list[Span]:
    attempts = [s for s in spans if s.name.startswith("attempt ")]
    order = ("tokentail.attempt", "tokentail.attempt.resumes")
    return sorted(attempts, key=lambda s: tuple(s.attributes[name] for name in order))


def _no_tool_twice(spans: list[Span]) -> None:
    calls = [s.attributes.get("gen_ai.tool.call.id") for s in spans if s.name.startswith("execute_tool ")]
    assert len(calls) == len(set(calls)), calls


def _ids_unique(spans: list[Span]) -> None:
    ids = [s.span_id for s in spans]
    assert len(ids) == len(set(ids)), "a span id exported twice"


@dataclass(frozen=True)
class Sdk:
    """An agent of tests/agents/traced_agents.py that calls its model through an official SDK with its official
    instrumentation on, and what its run's `chat` spans say, from the fake server's answers."""

    agent: str
    provider: str
    model: str
    finish_reasons: list[str]  # the tool call's turn, then the answer's, in the provider's own words
    call_id: str  # the fake server's id of its tool call
    env: dict[str, str] = field(default_factory=dict)  # the worker's

    def __str__(self) -> str:
        return self.provider


SDKS = [
    Sdk("clock", "openai", "gpt-test", ["tool_calls", "stop"], "call_time"),
    # anthropic 2.x traces its calls itself too; beside the instrumentation, whose docs say to turn that off,
    # each call would have two spans.
    Sdk(
        "clock_claude",
        "anthropic",
        "claude-test",
        ["tool_use", "end_turn"],
        "toolu_time",
        {"ANTHROPIC_OPEN_TELEMETRY": "false"},
    ),
]


@pytest.mark.parametrize("sdk", SDKS, ids=str)
async def test_a_run_with_a_tool_through_an_official_sdk_is_one_trace_with_the_sdk_spans_under_the_attempt(
    stack: Stack, receiver: OtlpReceiver, llm_url: str, sdk: Sdk
) -> None:
    agent, provider, model = sdk.agent, sdk.provider, sdk.model
    _traced(stack, receiver, llm_url, **sdk.env)
    url = stack.gateway()
    stack.worker()
    async with httpx2.AsyncClient(timeout=30) as client:
        created = await client.post(f"{url}/v1/sessions", json={"input": "what time is it?", "agent": agent})
        assert created.status_code == 201, created.text
        sid = created.json()["session_id"]
        received = await read_events(client, created.json()["events_url"])
    assert received.events[-1][1] == "run.completed"
    spans = await _run_trace(receiver, agent)
    _ids_unique(spans)
    # The gateway: the request's server span, the producer span under it, the run's span under that.
    server = _one(spans, "POST /v1/sessions", service=GATEWAY)
    assert server.kind == "server" and server.parent_id == ""
    (producer,) = [s for s in _children(spans, server) if s.kind == "producer"]
    assert producer.name.startswith("send ") and producer.service == GATEWAY
    run = _one(spans, f"invoke_agent {agent}", service=WORKER)
    assert run.parent_id == producer.span_id and run.kind == "consumer"  # the queue's two ends
    assert {
        key: run.attributes[key] for key in ("gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.conversation.id")
    } == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent,
        "gen_ai.conversation.id": sid,
    }
    assert run.attributes["gen_ai.request.model"] == f"{provider}:{model}"
    assert run.attributes["gen_ai.usage.output_tokens"] > 0 and run.attributes["tokentail.run.status"] == "completed"
    assert run.start_ns <= producer.end_ns  # from its queueing
    # The worker: one attempt, two model calls (the tool call, then the answer) and the tool between.
    (attempt,) = _attempts(spans)
    assert attempt.parent_id == run.span_id and attempt.service == WORKER and attempt.name == "attempt 1 start"
    assert attempt.attributes["tokentail.attempt.outcome"] == "completed"
    assert attempt.attributes["tokentail.queue_wait_s"] >= 0
    (first_token,) = [e for e in attempt.events if e.name == "First Token Stream Event"]
    assert first_token.attributes["tokentail.time_to_first_token_s"] >= 0
    chats = sorted((s for s in spans if s.scope == "tokentail" and s.name == f"chat {model}"), key=lambda s: s.start_ns)
    assert len(chats) == 2 and all(c.parent_id == attempt.span_id and c.kind == "client" for c in chats)
    assert [c.attributes["gen_ai.response.finish_reasons"] for c in chats] == [
        [reason] for reason in sdk.finish_reasons
    ]
    assert all(c.attributes["gen_ai.provider.name"] == provider for c in chats)
    assert all(c.attributes["gen_ai.usage.output_tokens"] > 0 for c in chats)
    tool = _one(spans, "execute_tool current_time")
    assert tool.parent_id == attempt.span_id and tool.attributes["gen_ai.tool.call.id"] == sdk.call_id
    assert chats[0].end_ns <= tool.start_ns <= tool.end_ns <= chats[1].start_ns
    # The official instrumentation's own spans, each under one of tokentail's chat spans.
    theirs = [s for s in spans if s.service == WORKER and s.scope not in ("tokentail", "")]
    assert len(theirs) == 2, [(s.name, s.scope) for s in spans]
    assert sorted(s.parent_id for s in theirs) == sorted(c.span_id for c in chats)
    _no_tool_twice(spans)


async def test_a_worker_killed_mid_answer_leaves_a_stand_in_its_takeover_links_to_and_no_tool_twice(
    stack: Stack, receiver: OtlpReceiver, llm_url: str
) -> None:
    _traced(stack, receiver, llm_url, TOKENTAIL_LEASE_MS="2000")

    # The tool's span and the first model call's, in the dead worker's last batches.
    async def tool_exported(_: str) -> None:
        tool_ran = lambda spans: any(s.name == "execute_tool current_time" for s in spans)  # noqa: E731
        await asyncio.to_thread(receiver.wait_for, tool_ran)

    body = {"input": "what time is it, slowly?", "model": "openai:gpt-test"}
    watcher = await killed_in_second_turn(stack, stack.gateway(), body, before_kill=tool_exported)
    assert watcher.seen.events[-1][1] == "run.completed"
    spans = await _run_trace(receiver, "assistant")
    _ids_unique(spans)
    run = _one(spans, "invoke_agent assistant")
    lost, second = _attempts(spans)
    assert (lost.name, second.name) == ("attempt 1 start", "attempt 2 takeover")
    assert lost.parent_id == second.parent_id == run.span_id
    assert lost.attributes["tokentail.attempt.outcome"] == "lost" and lost.status == "error"
    assert lost.attributes["tokentail.attempt.written_by"] == "takeover"
    assert lost.start_ns < second.start_ns and run.attributes["tokentail.run.attempts"] == 2
    assert second.attributes["tokentail.attempt.started_as"] == "takeover"
    assert [(link.span_id, link.attributes["tokentail.link"]) for link in second.links] == [
        (lost.span_id, "taken_over_from")
    ]
    # What the dead worker exported sits under its stand-in: the first model call, the tool.
    tool = _one(spans, "execute_tool current_time")
    assert tool.parent_id == lost.span_id
    assert any(s.name == "chat gpt-test" and s.parent_id == lost.span_id for s in spans)
    # The takeover replayed the tool's result and the first turn, and ran only the cut turn again.
    replayed = [e.attributes for e in second.events if e.name == "tokentail.replayed"]
    assert {"gen_ai.tool.name": "current_time", "gen_ai.tool.call.id": "call_time"} in replayed
    assert {"tokentail.step.key": "turn#0"} in replayed
    assert [s.parent_id for s in spans if s.name == "chat gpt-test" and s.parent_id == second.span_id] == [
        second.span_id
    ]
    _no_tool_twice(spans)


async def test_a_question_answered_through_another_gateway_resumes_in_a_linked_attempt_that_shows_the_wait(
    stack: Stack, receiver: OtlpReceiver
) -> None:
    _traced(stack, receiver)
    asking_gateway, answering_gateway = stack.gateway(), stack.gateway()
    stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)  # a busy box's slow start is not the run's time
    async with httpx2.AsyncClient(timeout=30) as client:
        made = (
            await client.post(f"{asking_gateway}/v1/sessions", json={"input": "clean up", "agent": "approve"})
        ).json()
        sid, rid = made["session_id"], made["run_id"]
        question = (await waiting_for_input(client, f"{asking_gateway}/v1/sessions/{sid}"))["pending_input"]
        answer = {"input_id": question["input_id"], "answer": {"approved": True}}
        answered = await client.post(f"{answering_gateway}/v1/sessions/{sid}/runs/{rid}/input", json=answer)
        assert answered.status_code == 202
        received = await read_events(client, f"{answering_gateway}/v1/sessions/{sid}/events")
    assert received.events[-1][1] == "run.completed"
    spans = await _run_trace(receiver, "approve")
    _ids_unique(spans)
    server = _one(spans, "POST /v1/sessions", service=GATEWAY)
    run = _one(spans, "invoke_agent approve")
    (producer,) = [s for s in _children(spans, server) if s.kind == "producer"]
    assert run.parent_id == producer.span_id  # the answer, on the other gateway, changed nothing of that
    asked, resumed = _attempts(spans)
    assert (asked.name, resumed.name) == ("attempt 1 start", "attempt 1 resume 1")
    assert asked.parent_id == resumed.parent_id == run.span_id
    assert asked.attributes["tokentail.attempt.outcome"] == "waiting"
    (event,) = [e for e in asked.events if e.name == "tokentail.input.required"]
    assert event.attributes == {"tokentail.input.id": question["input_id"], "tokentail.input.kind": "approval"}
    assert resumed.attributes["tokentail.attempt"] == 1 and resumed.attributes["tokentail.attempt.resumes"] == 1
    assert resumed.attributes["tokentail.attempt.started_as"] == "resume"
    assert [(link.span_id, link.attributes["tokentail.link"]) for link in resumed.links] == [
        (asked.span_id, "resumed_after_answer")
    ]
    assert resumed.attributes["tokentail.input.id"] == question["input_id"]
    assert resumed.attributes["tokentail.answer_wait_s"] > 0
    assert asked.end_ns <= resumed.start_ns and resumed.attributes["tokentail.attempt.outcome"] == "completed"
    assert run.attributes["tokentail.run.resumes"] == 1
