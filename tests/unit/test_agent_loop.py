"""The agent loop: tools called, progress shown, results fed back, until the model answers."""

import json
from typing import Any

import pytest

from tests.fake_llm import FakeLLM, Reply, anthropic_stream, openai_chunk, openai_stream
from tests.unit.test_writer import RecordingLease
from tokentail.shared.records import RunRecord
from tokentail.worker.agent_loop import AgentError, run_model_agent
from tokentail.worker.agents import ASSISTANT, Agent
from tokentail.worker.context import RunContext
from tokentail.worker.providers.anthropic_messages import AnthropicProvider
from tokentail.worker.providers.openai_chat import OpenAIProvider
from tokentail.worker.providers.scripted import ScriptedProvider
from tokentail.worker.retry import RetryPolicy
from tokentail.worker.tools import tool
from tokentail.worker.writer import EventWriter, FlushTicks


def _context(store: RecordingLease, text: str, **params: Any) -> RunContext:
    writer = EventWriter(store, FlushTicks(0), max_output_chars=1_000_000)  # type: ignore[arg-type]
    run = RunRecord(run_id="r", input=text, params=params, attempt=1)
    return RunContext(writer, "s", run, history=[])


async def _events(store: RecordingLease, context: RunContext) -> list[tuple[str, dict[str, Any]]]:
    await context.hooks.writer.flush()
    return store.events


async def test_the_scripted_model_calls_the_calculator_and_answers_with_its_result() -> None:
    store = RecordingLease()
    context = _context(store, "what is 6 * 7?", tokens=10, tokens_per_second=0)
    await run_model_agent(ASSISTANT, context, ScriptedProvider(), "", RetryPolicy(), tool_timeout=5)
    events = await _events(store, context)
    kinds = [kind for kind, _ in events]
    assert kinds.index("tool.started") < kinds.index("tool.completed")
    started = next(data for kind, data in events if kind == "tool.started")
    completed = next(data for kind, data in events if kind == "tool.completed")
    assert started["name"] == "calculator" and started["arguments"] == {"expression": "6 * 7"}
    assert completed["call_id"] == started["call_id"] and completed["result"] == 42
    text = "".join(data["text"] for kind, data in events if kind == "message.delta")
    assert text.startswith("Let me calculate that. The calculator says 42.")
    assert context.hooks.meter.usage["output_tokens"] > 0


async def test_parallel_calls_run_and_their_results_go_back_to_the_model() -> None:
    calls = [
        (0, "c1", "calculator", ['{"expression":', ' "1+1"}']),
        (1, "c2", "nope", ["{}"]),
        (2, "c3", "calculator", ["{bad"]),
    ]
    fake = FakeLLM([Reply(chunks=openai_stream(["Checking. "], calls)), Reply(chunks=openai_stream(["Done: 2."]))])
    store = RecordingLease()
    context = _context(store, "compute")
    await run_model_agent(ASSISTANT, context, OpenAIProvider(fake.openai()), "m", RetryPolicy(), tool_timeout=5)
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
    await run_model_agent(agent, context, OpenAIProvider(fake.openai()), "m", RetryPolicy(), tool_timeout=0.1)
    failed = next(data for kind, data in await _events(store, context) if kind == "tool.failed")
    assert "did not finish within 0.1 s" in failed["error"]
    assert json.loads(json.dumps(fake.requests[1]["messages"][-1]))["content"].startswith("error: slow did not finish")


async def test_an_agent_that_never_stops_calling_tools_fails_after_max_steps() -> None:
    loop_forever = [Reply(chunks=openai_stream([], [(0, f"c{i}", "current_time", ["{}"])])) for i in range(3)]
    fake = FakeLLM(loop_forever)
    agent = Agent("loopy", tools=ASSISTANT.tools, max_steps=3)
    with pytest.raises(AgentError, match="within 3 steps"):
        await run_model_agent(
            agent, _context(RecordingLease(), "go"), OpenAIProvider(fake.openai()), "m", RetryPolicy(), 5
        )


async def test_retries_are_shown_as_status_events() -> None:
    fake = FakeLLM([Reply(status=429, headers={"retry-after": "0"}), Reply(chunks=openai_stream(["hi"]))])
    store = RecordingLease()
    context = _context(store, "go")
    await run_model_agent(ASSISTANT, context, OpenAIProvider(fake.openai()), "m", RetryPolicy(), 5)
    statuses = [data["text"] for kind, data in await _events(store, context) if kind == "status"]
    assert len(statuses) == 1 and "rate limit" in statuses[0] and "Retrying in 0.0 s" in statuses[0]


async def test_a_reasoning_model_s_thinking_streams_as_reasoning_and_stays_out_of_the_answer() -> None:
    thinking = [openai_chunk({"role": "assistant", "reasoning_content": "Six sevens... "})]
    fake = FakeLLM([Reply(chunks=[*thinking, *openai_stream(["42."])[1:]])])
    store = RecordingLease()
    context = _context(store, "6 * 7?")
    await run_model_agent(ASSISTANT, context, OpenAIProvider(fake.openai()), "m", RetryPolicy(), tool_timeout=5)
    assert [(kind, data["text"]) for kind, data in await _events(store, context)] == [
        ("reasoning.delta", "Six sevens... "),
        ("message.delta", "42."),
    ]
    assert context.hooks.writer.text == "42."


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
    await run_model_agent(ASSISTANT, context, provider, "m", RetryPolicy(), tool_timeout=5)
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
