"""A run that goes on after its worker died (worker/run/recovery/takeover.py), killed at every instant
of a run: what the record held at that instant (the appends and steps that had landed), then a
second attempt from it. Clients' text reads as the uninterrupted answer, and a tool whose result was
recorded never runs again."""

import json
from typing import Any

import pytest

from tests.servers.fake_llm import FakeLLM, Reply, openai_stream
from tests.unit.shared.vocabulary.test_run_log import _log
from tests.unit.worker.writes.test_writer import LeaseTicks, RecordingLease
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.shared.vocabulary.run_log import RunLog
from tokentail.worker.providers.base import Provider
from tokentail.worker.providers.openai_chat import OpenAIProvider
from tokentail.worker.providers.scripted import ScriptedProvider
from tokentail.worker.run.agent_loop import run_model_agent
from tokentail.worker.run.agents import Agent
from tokentail.worker.run.context import RunContext
from tokentail.worker.run.recovery.takeover import kept_until
from tokentail.worker.run.retry import RetryPolicy
from tokentail.worker.tools import tool
from tokentail.worker.writes.writer import EventWriter

Event = tuple[int, str, str]  # (seq, type, data JSON) as the session stream holds it


class CountingCalculator:
    """The `calculator` tool, counting its runs: the side effect the tests observe."""

    def __init__(self) -> None:
        self.runs: list[str] = []

        @tool(name="calculator")
        def calculator(expression: str, call_id: str) -> str:
            "Arithmetic."
            self.runs.append(call_id)
            return "42"

        self.tool = calculator


async def _attempt(
    agent: Agent, provider: Provider, record: list[Event], steps: dict[str, str], attempt: int, question: str
) -> tuple[RecordingLease, RunContext]:
    params = {"tokens": 60, "tokens_per_second": 400} if isinstance(provider, ScriptedProvider) else {}
    """One attempt of the run, going on from `record` and `steps` (none on the first)."""
    lease = RecordingLease()
    writer = EventWriter(lease, LeaseTicks(0), max_output_chars=1_000_000)  # type: ignore[arg-type]
    log = RunLog.of("r", record) if attempt > 1 else None
    run = RunRecord(run_id="r", input=question, params=params)
    run.attempt, run.steps = attempt, dict(steps)
    context = RunContext(writer, "s", run, history=[], log=log)
    await run_model_agent(agent, context, lease, provider, "m", RetryPolicy(), tool_timeout=5)
    await writer.flush()
    return lease, context


def _landed(journal: list[tuple[str, Any]], first_seq: int) -> tuple[list[Event], dict[str, str]]:
    """The events (numbered from `first_seq`) and steps of a journal, as Redis would hold them."""
    events: list[Event] = []
    steps: dict[str, str] = {}
    for kind, entry in journal:
        if kind == "step":
            steps[entry[0]] = entry[1]
        elif kind == "events":  # (a usage record is no event)
            events += [(first_seq + len(events), event_type, data) for event_type, data in entry]
    return events, steps


async def _killed_at_every_instant(
    make_provider: Any, continues: bool, question: str = "what is 6 * 7?"
) -> list[tuple[int, bool, int]]:
    """For each instant: whether the second attempt kept every event, and the tool's runs in it."""
    counter = CountingCalculator()
    agent = Agent(name="counting", tools=(counter.tool,))
    whole, context = await _attempt(agent, make_provider(0), [], {}, 1, question)
    answer, tool_used = context.this_attempt.output, bool(counter.runs)
    assert answer
    outcomes = []
    for instant in range(len(whole.landed) + 1):
        counter.runs.clear()
        started = (1, "run.started", json.dumps({"run_id": "r", "attempt": 1}))
        events, steps = _landed(whole.landed[:instant], first_seq=2)
        record = [started, *events]
        keep = kept_until(agent, steps, RunLog.of("r", record), continues)
        continued = {"run_id": "r", "attempt": 2, "from_event_id": keep}
        record.append((len(record) + 1, "run.continued", json.dumps(continued)))
        turns_recorded = sum(key.startswith("turn#") for key in steps)
        second, context = await _attempt(agent, make_provider(turns_recorded), record, steps, 2, question)
        after, _ = _landed(second.landed, first_seq=len(record) + 1)
        seen = RunLog.of("r", [*record, *after])
        assert seen.text == answer, f"killed after {instant} of {len(whole.landed)} writes"
        assert context.this_attempt.output == answer  # the run's output
        tool_recorded = any(key.startswith("tool:") for key in steps)
        assert len(counter.runs) == (1 if tool_used and not tool_recorded else 0)
        outcomes.append((instant, keep == len(record) - 1, len(counter.runs)))
    return outcomes


@pytest.mark.parametrize("question", ["what is 6 * 7?", "tell me about streams"])
async def test_the_scripted_model_goes_on_exactly_wherever_the_worker_died(question: str) -> None:
    outcomes = await _killed_at_every_instant(lambda turns: ScriptedProvider(), continues=True, question=question)
    assert all(nothing_dropped for _, nothing_dropped, _ in outcomes)  # it continues: clients drop nothing
    assert len(outcomes) >= 4


async def test_with_openai_s_own_api_only_the_cut_turn_restarts() -> None:
    replies = [
        openai_stream(
            ["Let me ", "calculate."], tool_calls=[(0, "call_1", "calculator", ['{"expression":', '"6*7"}'])]
        ),
        openai_stream(["It ", "is ", "forty", "-two."]),
    ]
    asked: list[int] = []

    def provider(turns_recorded: int) -> OpenAIProvider:
        asked.append(turns_recorded)
        return OpenAIProvider(FakeLLM([Reply(chunks=chunks) for chunks in replies[turns_recorded:]]).openai())

    outcomes = await _killed_at_every_instant(provider, continues=False)
    # Killed inside a turn's text, the turn's text is dropped (kept until before it) and asked again;
    # the turns before it are kept, and never asked again.
    assert any(not nothing_dropped for _, nothing_dropped, _ in outcomes)
    assert asked[0] == 0 and max(asked) == 1


def test_the_cut_is_what_came_since_the_last_tool_or_question_past_the_recorded_turns() -> None:
    log = _log(
        ("message.delta", {"text": "Let me look. "}),  # turn 0, recorded
        ("tool.started", {"call_id": "c1", "name": "t", "arguments": {}}),
        ("tool.completed", {"call_id": "c1", "result": 1, "duration_ms": 0}),
        ("reasoning.delta", {"text": "so"}),  # 4: the cut turn
        ("message.delta", {"text": "It is"}),
    )
    before, cut = log.cut(len("Let me look. "))
    assert before == 3 and [event.seq for event in cut] == [4, 5]
    assert log.cut(len("Let me look. It is")) == (5, [])  # all of it recorded: nothing cut
    agent = Agent(name="a")
    turn = {"turn#0": json.dumps({"message": {"content": "Let me look. "}})}
    # A cut turn with reasoning restarts even where the provider continues: its thinking would come again.
    assert kept_until(agent, turn, log, continues=True) == 3
    assert kept_until(agent, turn, log, continues=False) == 3


def test_a_tool_s_call_id_parameter_is_its_idempotency_key_never_the_model_s() -> None:
    counter = CountingCalculator()
    assert counter.tool.takes_call_id
    assert "call_id" not in counter.tool.spec.parameters["properties"]
    assert counter.tool.spec.parameters["required"] == ["expression"]
