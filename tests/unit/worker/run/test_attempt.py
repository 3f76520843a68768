"""Attempt (worker/run/attempt.py): steps, done once and replayed after, and the text of a cut
turn that a model refuses to continue."""

import json
from typing import Any

import pytest

from tests.servers.fake_llm import FakeLLM, Reply, anthropic_stream
from tests.unit.worker.run.test_takeover import Event, _landed
from tests.unit.worker.writes.test_writer import LeaseTicks, RecordingLease
from tokentail.shared.vocabulary.records import MAX_STEP_BYTES, RunRecord
from tokentail.shared.vocabulary.run_log import RunLog
from tokentail.worker.agent_errors import StepTooLarge
from tokentail.worker.providers.anthropic_messages import AnthropicProvider
from tokentail.worker.run.agent_loop import run_model_agent
from tokentail.worker.run.agents import Agent
from tokentail.worker.run.context import RunContext
from tokentail.worker.run.retry import RetryPolicy
from tokentail.worker.writes.writer import EventWriter


async def test_a_step_is_done_once_and_replayed_after() -> None:
    lease = RecordingLease()
    writer = EventWriter(lease, LeaseTicks(0), max_output_chars=100)  # type: ignore[arg-type]
    calls: list[int] = []

    async def fetch(order: int) -> dict[str, Any]:
        calls.append(order)
        return {"order": order, "items": []}

    context = RunContext(writer, "s", RunRecord(run_id="r", input="x"), history=[])
    assert await context.step("fetch", fetch, 7) == {"order": 7, "items": []}
    assert await context.step("fetch", fetch, 8) == {"order": 8, "items": []}  # the second of that name
    with pytest.raises(ValueError, match="must be JSON"):
        await context.step("bad", lambda: object())
    assert list(lease.steps) == ["fetch#0", "fetch#1"]
    again = RunContext(writer, "s", RunRecord(run_id="r", input="x", steps=lease.steps), history=[])
    assert await again.step("fetch", fetch, 7) == {"order": 7, "items": []}
    assert await again.step("fetch", fetch, 8) == {"order": 8, "items": []}
    assert calls == [7, 8]  # replayed, not done again


async def test_a_step_too_large_to_keep_with_the_run_is_refused_clearly() -> None:
    lease = RecordingLease()
    writer = EventWriter(lease, LeaseTicks(0), max_output_chars=100)  # type: ignore[arg-type]
    context = RunContext(writer, "s", RunRecord(run_id="r", input="x"), history=[])
    with pytest.raises(StepTooLarge, match="exceeds"):
        await context.step("big", lambda: "x" * (MAX_STEP_BYTES + 1))
    assert lease.steps == {}


async def test_a_model_that_refuses_to_continue_starts_the_turn_over_and_clients_drop_its_text() -> None:
    """Anthropic's newest models answer a prefill with 400: the turn starts over, after a
    `run.continued` that drops the text clients had of it."""
    fake = FakeLLM([Reply(status=400), Reply(chunks=anthropic_stream(["It is ", "noon."]))])
    record: list[Event] = [
        (1, "run.started", json.dumps({"run_id": "r", "attempt": 1})),
        (2, "message.delta", json.dumps({"run_id": "r", "text": "It is "})),
        (3, "run.continued", json.dumps({"run_id": "r", "attempt": 2, "from_event_id": 2})),
    ]
    lease = RecordingLease()
    writer = EventWriter(lease, LeaseTicks(0), max_output_chars=1000)  # type: ignore[arg-type]
    run = RunRecord(run_id="r", input="time?", attempt=2)
    context = RunContext(writer, "s", run, history=[], log=RunLog.of("r", record))
    await run_model_agent(Agent(name="a"), context, lease, AnthropicProvider(fake.anthropic()), "m", RetryPolicy(), 5)
    await writer.flush()
    assert fake.requests[0]["messages"][-1] == {"role": "assistant", "content": "It is"}  # refused
    assert fake.requests[1]["messages"][-1]["role"] == "user"  # the turn again, from its start
    after, _ = _landed(lease.landed, first_seq=4)
    assert after[0][1] == "run.continued" and json.loads(after[0][2])["from_event_id"] == 1
    assert RunLog.of("r", [*record, *after]).text == context.this_attempt.output == "It is noon."
