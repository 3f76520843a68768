"""The agent loop: tools called, progress shown, results fed back, until the model answers."""

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from tests.servers.fake_llm import FakeLLM, Reply, anthropic_stream, openai_chunk, openai_stream
from tests.unit.worker.writes.test_writer import LeaseTicks, RecordingLease
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.worker.agent_errors import AgentError
from tokentail.worker.providers.anthropic_messages import AnthropicProvider
from tokentail.worker.providers.base import Chunk, ModelRequest, TextDelta, ToolCall
from tokentail.worker.providers.openai_chat import OpenAIProvider
from tokentail.worker.providers.scripted import ScriptedProvider
from tokentail.worker.run.agent_loop import run_model_agent
from tokentail.worker.run.agents import ASSISTANT, Agent
from tokentail.worker.run.context import RunContext
from tokentail.worker.run.retry import RetryPolicy
from tokentail.worker.tools import tool
from tokentail.worker.writes.writer import EventWriter


def _context(store: RecordingLease, text: str, **params: Any) -> RunContext:
    writer = EventWriter(store, LeaseTicks(0), max_output_chars=1_000_000)  # type: ignore[arg-type]
    run = RunRecord(run_id="r", input=text, params=params, attempt=1)
    return RunContext(writer, "s", run, history=[])


async def _events(store: RecordingLease, context: RunContext) -> list[tuple[str, dict[str, Any]]]:
    await context.this_attempt.writer.flush()
    return store.events


async def test_the_scripted_model_calls_the_calculator_and_answers_with_its_result() -> None:
    store = RecordingLease()
    context = _context(store, "what is 6 * 7?", tokens=10, tokens_per_second=0)
    await run_model_agent(ASSISTANT, context, store, ScriptedProvider(), "", RetryPolicy(), tool_timeout=5)
    events = await _events(store, context)
    kinds = [kind for kind, _ in events]
    assert kinds.index("tool.started") < kinds.index("tool.completed")
    started = next(data for kind, data in events if kind == "tool.started")
    completed = next(data for kind, data in events if kind == "tool.completed")
    assert started["name"] == "calculator" and started["arguments"] == {"expression": "6 * 7"}
    assert completed["call_id"] == started["call_id"] and completed["result"] == 42
    text = "".join(data["text"] for kind, data in events if kind == "message.delta")
    assert text.startswith("Let me calculate that. The calculator says 42.")
    assert context.this_attempt.meter.usage["output_tokens"] > 0


async def test_parallel_calls_run_and_their_results_go_back_to_the_model() -> None:
    calls = [
        (0, "c1", "calculator", ['{"expression":', ' "1+1"}']),
        (1, "c2", "nope", ["{}"]),
        (2, "c3", "calculator", ["{bad"]),
    ]
    fake = FakeLLM([Reply(chunks=openai_stream(["Checking. "], calls)), Reply(chunks=openai_stream(["Done: 2."]))])
    store = RecordingLease()
    context = _context(store, "compute")
    await run_model_agent(ASSISTANT, context, store, OpenAIProvider(fake.openai()), "m", RetryPolicy(), tool_timeout=5)
    events = await _events(store, context)
    outcomes = {data["call_id"]: kind for kind, data in events if kind in ("tool.completed", "tool.failed")}
    assert outcomes == {"c1": "tool.completed", "c2": "tool.failed", "c3": "tool.failed"}
    failures = {data["call_id"]: data["error"] for kind, data in events if kind == "tool.failed"}
    assert "no tool 'nope'" in failures["c2"] and "not a JSON object" in failures["c3"]
    tool_messages = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages][0] == ("c1", "2")
    assert tool_messages[1]["content"].startswith("error:")
    assert "".join(data["text"] for kind, data in events if kind == "message.delta") == "Checking. Done: 2."


async def test_a_slow_tool_times_out_and_the_model_hears_it() -> None:
    import asyncio

    @tool
    async def slow() -> str:
        """Takes its time."""
        await asyncio.sleep(10)
        return "never"

    agent = Agent("slowpoke", tools=(slow,))
    fake = FakeLLM([Reply(chunks=openai_stream([], [(0, "c1", "slow", ["{}"])])), Reply(chunks=openai_stream(["ok"]))])
    store = RecordingLease()
    context = _context(store, "go")
    await run_model_agent(agent, context, store, OpenAIProvider(fake.openai()), "m", RetryPolicy(), tool_timeout=0.1)
    failed = next(data for kind, data in await _events(store, context) if kind == "tool.failed")
    assert "did not finish within 0.1 s" in failed["error"]
    assert json.loads(json.dumps(fake.requests[1]["messages"][-1]))["content"].startswith("error: slow did not finish")


async def test_an_agent_that_never_stops_calling_tools_fails_after_max_steps() -> None:
    loop_forever = [Reply(chunks=openai_stream([], [(0, f"c{i}", "current_time", ["{}"])])) for i in range(3)]
    fake = FakeLLM(loop_forever)
    agent = Agent("loopy", tools=ASSISTANT.tools, max_steps=3)
    with pytest.raises(AgentError, match="within 3 steps"):
        lease = RecordingLease()
        await run_model_agent(agent, _context(lease, "go"), lease, OpenAIProvider(fake.openai()), "m", RetryPolicy(), 5)


async def test_retries_are_shown_as_status_events() -> None:
    fake = FakeLLM([Reply(status=429, headers={"retry-after": "0"}), Reply(chunks=openai_stream(["hi"]))])
    store = RecordingLease()
    context = _context(store, "go")
    await run_model_agent(ASSISTANT, context, store, OpenAIProvider(fake.openai()), "m", RetryPolicy(), 5)
    statuses = [data["text"] for kind, data in await _events(store, context) if kind == "status"]
    assert len(statuses) == 1 and "rate limit" in statuses[0] and "Retrying in 0.0 s" in statuses[0]


async def test_a_reasoning_model_s_thinking_streams_as_reasoning_and_stays_out_of_the_answer() -> None:
    thinking = [openai_chunk({"role": "assistant", "reasoning_content": "Six sevens... "})]
    fake = FakeLLM([Reply(chunks=[*thinking, *openai_stream(["42."])[1:]])])
    store = RecordingLease()
    context = _context(store, "6 * 7?")
    await run_model_agent(ASSISTANT, context, store, OpenAIProvider(fake.openai()), "m", RetryPolicy(), tool_timeout=5)
    assert [(kind, data["text"]) for kind, data in await _events(store, context)] == [
        ("reasoning.delta", "Six sevens... "),
        ("message.delta", "42."),
    ]
    assert context.this_attempt.writer.text == "42."


async def test_anthropic_thinking_streams_as_reasoning_and_its_signed_block_goes_back_with_the_tool_call() -> None:
    tool_use = [("toolu_1", "calculator", ['{"expression": "6 * 7"}'])]
    fake = FakeLLM(
        [
            Reply(chunks=anthropic_stream(["Let me compute."], tool_use, thinking=["Six ", "sevens."])),
            Reply(chunks=anthropic_stream(["42."])),
        ]
    )
    store = RecordingLease()
    context = _context(store, "6 * 7?", thinking_budget=2048)
    provider = AnthropicProvider(fake.anthropic())
    await run_model_agent(ASSISTANT, context, store, provider, "m", RetryPolicy(), tool_timeout=5)
    events = await _events(store, context)
    assert [(kind, data.get("text")) for kind, data in events if kind.endswith(".delta")] == [
        ("reasoning.delta", "Six sevens."),
        ("message.delta", "Let me compute."),
        ("message.delta", "42."),
    ]
    first, second = fake.requests
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 2048} and first["max_tokens"] == 4096 + 2048
    assert second["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "Six sevens.",
        "signature": "c2lnbmF0dXJl",
    }
    assert [block["type"] for block in second["messages"][1]["content"]] == ["thinking", "text", "tool_use"]


class _SteeredMidAnswer:
    """A model that, while it streams its first answer, sees a steer sent (at `steer_after` pieces);
    then answers the steer."""

    provider = "fake"
    continues = False

    def __init__(self, store: RecordingLease, first: list[str], steer_after: int, tool_call: bool = False) -> None:
        self.store, self.first, self.steer_after, self.tool_call = store, first, steer_after, tool_call
        self.requests: list[ModelRequest] = []
        self.closed = False

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        self.requests.append(replace(request, messages=list(request.messages)))  # as sent: the loop goes on
        if len(self.requests) > 1:
            yield TextDelta("Paris est la capitale.")
            return
        try:
            for n, piece in enumerate(self.first):
                if n == self.steer_after:
                    self.store.steer("in French")
                yield TextDelta(piece)
            if self.steer_after == len(self.first):
                self.store.steer("in French")
            if self.tool_call:
                yield ToolCall("c1", "current_time", {})
        finally:
            self.closed = True


def _text(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(str(data["text"]) for kind, data in events if kind == "message.delta")


async def test_a_steer_cuts_the_answer_at_a_safe_point_and_the_next_request_carries_it_once() -> None:
    store = RecordingLease()
    context = _context(store, "What is the capital of France?")
    model = _SteeredMidAnswer(store, ["Paris", " is", " the", " capital", " of", " France."], steer_after=2)
    await run_model_agent(ASSISTANT, context, store, model, "m", RetryPolicy(), tool_timeout=5)
    events = await _events(store, context)
    # Cut before " the" (a word's start), its stream closed: what was shown is the turn, kept.
    assert model.closed and _text(events) == "Paris is\n\nParis est la capitale."
    assert [kind for kind, _ in events].count("steer.applied") == 1
    second = model.requests[1].messages
    assert [(m.role, m.content) for m in second[-2:]] == [("assistant", "Paris is"), ("user", "in French")]
    assert len(model.requests) == 2  # answered once: the steer is not taken in again
    # The cut turn was recorded before the steers: an attempt that goes on replays both.
    assert list(store.steps) == ["turn#0", "steers#1"]  # ("steers#0": before the first request, none)
    assert json.loads(store.steps["turn#0"])["message"]["content"] == "Paris is"


class _SteeredEachTurn:
    """A model whose first `steers` answers each see a steer sent while they stream; then it answers."""

    provider = "fake"
    continues = False

    def __init__(self, store: RecordingLease, steers: int) -> None:
        self.store, self.steers, self.requests = store, steers, 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        self.requests += 1
        if self.requests > self.steers:
            yield TextDelta("Done.")
            return
        yield TextDelta("Working")
        self.store.steer(f"steer {self.requests}")
        yield TextDelta(" on it.")


async def test_steers_taken_in_spend_none_of_the_agent_s_steps() -> None:
    # Each steer cuts a model turn: that turn is the person's, not one of the agent's steps. (A run
    # takes in a bounded number of steers: TOKENTAIL_MAX_STEERS_PER_RUN bounds these turns.)
    store = RecordingLease()
    model = _SteeredEachTurn(store, steers=5)
    await run_model_agent(Agent("brief", max_steps=2), _context(store, "go"), store, model, "m", RetryPolicy(), 5)
    assert model.requests == 6 and _text(await _events(store, _context(store, "go"))).endswith("Done.")


async def test_word_of_a_steer_already_taken_in_cuts_nothing() -> None:
    # A lease renewal's reply said steers wait, computed before the last ones were taken in: the
    # answer after them streams whole (a cut with nothing to take in would have ended the run there).
    store = RecordingLease()
    context = _context(store, "Capital of France?")
    model = _SteeredMidAnswer(store, ["Paris", " is", " it."], steer_after=-1)
    store.inbox.sent.set()
    await run_model_agent(ASSISTANT, context, store, model, "m", RetryPolicy(), tool_timeout=5)
    assert _text(await _events(store, context)) == "Paris is it."
    assert len(model.requests) == 1 and not store.inbox.sent.is_set()


async def test_a_steer_sent_during_a_turn_that_calls_a_tool_comes_after_the_tool_s_result() -> None:
    store = RecordingLease()
    context = _context(store, "What time is it?")
    model = _SteeredMidAnswer(store, ["Let", " me", " look."], steer_after=3, tool_call=True)  # after its text
    await run_model_agent(ASSISTANT, context, store, model, "m", RetryPolicy(), tool_timeout=5)
    second = model.requests[1].messages
    assert [m.role for m in second[-3:]] == ["assistant", "tool", "user"] and second[-1].content == "in French"
    assert second[-3].content == "Let me look."  # not cut: the turn called a tool
    assert _text(await _events(store, context)) == "Let me look.Paris est la capitale."


async def test_a_steer_whose_word_was_missed_is_found_as_the_answer_ends_and_answered() -> None:
    store = RecordingLease()
    context = _context(store, "Capital of France?")
    model = _SteeredMidAnswer(store, ["Paris."], steer_after=-1)
    store.steers.append("in French")  # kept with the session; its worker was not told
    await run_model_agent(ASSISTANT, context, store, model, "m", RetryPolicy(), tool_timeout=5)
    assert _text(await _events(store, context)) == "Paris.\n\nParis est la capitale."
    assert list(store.steps) == ["steers#1", "turn#0"]  # the turn recorded right after: replayed before them


async def test_a_steer_sent_before_the_first_request_goes_with_it() -> None:
    store = RecordingLease()
    context = _context(store, "Capital of France?")
    store.steer("in French")  # sent while the run was queued: its start says so
    model = _SteeredMidAnswer(store, ["Paris", " est."], steer_after=-1)
    await run_model_agent(ASSISTANT, context, store, model, "m", RetryPolicy(), tool_timeout=5)
    first = model.requests[0].messages
    assert [(m.role, m.content) for m in first[-2:]] == [("user", "Capital of France?"), ("user", "in French")]
    assert _text(await _events(store, context)) == "Paris est." and list(store.steps) == ["steers#0"]


async def test_steers_an_agent_s_own_saved_state_holds_are_not_given_again() -> None:
    # A LangGraph thread's checkpoints hold the steers its first look took in (steers_taken: 1).
    store = RecordingLease()
    steered = json.dumps([{"steer_id": "st_0", "run_id": "r", "input": "in French"}])
    run = RunRecord(run_id="r", input="Capital?", attempt=2, steps={"steers#0": steered})
    writer = EventWriter(store, LeaseTicks(0), max_output_chars=1_000_000)  # type: ignore[arg-type]
    attempt = RunContext(writer, "s", run, history=[]).this_attempt
    attempt.skip_recorded()
    attempt.skip_steers(1)
    store.steer("a new one")
    assert [steer.input for steer in await attempt.take_steers()] == ["a new one"]
    assert list(store.steps) == ["steers#1"]


async def test_an_attempt_that_goes_on_replays_the_steers_taken_in_and_takes_no_new_one_while_replaying() -> None:
    store = RecordingLease()
    steered = json.dumps([{"steer_id": "st_0", "run_id": "r", "input": "in French"}])
    message: dict[str, object] = {"role": "assistant", "content": "Paris", "tool_calls": [], "call_id": None}
    turn = json.dumps({"message": {**message, "is_error": False, "thinking": []}, "reasoning_chars": 0})
    run = RunRecord(run_id="r", input="Capital?", attempt=2, steps={"steers#0": steered, "turn#0": turn})
    writer = EventWriter(store, LeaseTicks(0), max_output_chars=1_000_000)  # type: ignore[arg-type]
    attempt = RunContext(writer, "s", run, history=[]).this_attempt
    store.steer("a new one")  # sent while the run was taken over
    assert [steer.input for steer in await attempt.take_steers()] == ["in French"]  # replayed, not applied again
    assert await attempt.take_steers() == []  # "turn#0" is still to replay: what follows was made without it
    assert attempt.recorded_step(attempt.step_key("turn")) is not None
    assert [steer.input for steer in await attempt.take_steers()] == ["a new one"]  # the record replayed: new ones
    assert list(store.steps) == ["steers#2"]
