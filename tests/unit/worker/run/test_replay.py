"""The replay (worker/run/recovery/replay.py): what a run's record holds is not appended again."""

import pytest

from tests.unit.worker.run.test_takeover import CountingCalculator, _attempt
from tests.unit.worker.writes.test_writer import LeaseTicks, RecordingLease
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.worker.agent_errors import WaitingForInput
from tokentail.worker.providers.scripted import ScriptedProvider
from tokentail.worker.run.agent_loop import run_model_agent
from tokentail.worker.run.agents import Agent
from tokentail.worker.run.context import RunContext
from tokentail.worker.run.retry import RetryPolicy
from tokentail.worker.writes.writer import EventWriter


async def test_a_denied_call_replayed_after_a_crash_is_still_shown_denied() -> None:
    """Killed after the denial was recorded and before `tool.failed` was appended: the next attempt
    shows the call failed as denied, without asking again or running the tool."""
    counter = CountingCalculator()
    agent = Agent(name="careful", tools=(counter.tool.asking_first(),))
    question = "what is 6 * 7?"
    with pytest.raises(WaitingForInput) as waiting:
        await _attempt(agent, ScriptedProvider(), [], {}, 1, question)
    (asked,) = waiting.value.questions
    resumed = RunRecord(run_id="r", input=question, params={"tokens_per_second": 0}, attempt=1)
    resumed.asked, resumed.answers = [asked], {asked.input_id: {"approved": False}}
    lease = RecordingLease()
    writer = EventWriter(lease, LeaseTicks(0), max_output_chars=1000)  # type: ignore[arg-type]
    await run_model_agent(
        agent, RunContext(writer, "s", resumed, history=[]), lease, ScriptedProvider(), "m", RetryPolicy(), 5
    )
    await writer.flush()
    (failed,) = [data for kind, data in lease.events if kind == "tool.failed"]
    assert failed["denied"] is True and counter.runs == []
    # Replayed with the denial recorded but none of its events appended (no record of them to skip):
    steps = dict(lease.steps)
    again = RunRecord(run_id="r", input=question, params={"tokens_per_second": 0}, attempt=2, steps=steps)
    again.asked, again.answers = resumed.asked, resumed.answers
    replayer = RecordingLease()
    writer = EventWriter(replayer, LeaseTicks(0), max_output_chars=1000)  # type: ignore[arg-type]
    context = RunContext(writer, "s", again, history=[])
    await run_model_agent(agent, context, replayer, ScriptedProvider(), "m", RetryPolicy(), 5)
    await writer.flush()
    (shown,) = [data for kind, data in replayer.events if kind == "tool.failed"]
    assert shown["denied"] is True and counter.runs == []
