"""An OpenAI Agents SDK agent (examples/openai_agents_agent.py, unchanged) in real gateway and worker
processes, its OpenAI client streaming from the local fake OpenAI server."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast
from unittest.mock import ANY

import httpx2
import pytest

pytest.importorskip("agents")

from shared.events import EventData, event_type_of  # noqa: E402
from shared.records import RunRecord, Turn  # noqa: E402
from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks import fake_openai  # noqa: E402
from tests.e2e.watcher import Watcher  # noqa: E402
from tests.waiting import eventually  # noqa: E402
from worker.context import RunContext  # noqa: E402
from worker.writer import EventWriter  # noqa: E402

AGENTS = '{"weather": "examples.openai_agents_agent:weather"}'
QUESTION = "What is the weather in Paris?"


@pytest.fixture
def llm() -> Iterator[str]:
    with fake_openai.serving() as url:
        yield url


def _worker(stack: Stack, llm: str, model: str = "gpt-test") -> Any:
    return stack.worker(
        TOKENTAIL_AGENTS=AGENTS,
        OPENAI_API_KEY=fake_openai.API_KEY,
        OPENAI_BASE_URL=llm,
        TOKENTAIL_EXAMPLE_MODEL=model,
    )


async def _start(client: httpx2.AsyncClient) -> Watcher:
    created = await client.post("/v1/sessions", json={"input": QUESTION, "agent": "weather"})
    assert created.status_code == 201, created.text
    return Watcher(client, created.json()["events_url"])


async def test_the_answer_streams_with_the_tool_call_and_usage(stack: Stack, llm: str) -> None:
    url = stack.gateway(TOKENTAIL_AGENTS=AGENTS)
    _worker(stack, llm)
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _start(client)
        await asyncio.wait_for(watcher.follow(), 60)
    seen = watcher.seen
    assert seen.ids == list(range(1, len(seen.ids) + 1))
    kinds = [kind for _, kind, _ in seen.events]
    deltas = kinds.count("message.delta")
    assert kinds == ["run.queued", "run.started", "tool.started", "tool.completed"] + ["message.delta"] * deltas + [
        "run.completed"
    ], kinds
    assert deltas >= 1
    started = next(data for _, kind, data in seen.events if kind == "tool.started")
    completed = next(data for _, kind, data in seen.events if kind == "tool.completed")
    assert started["name"] == "get_weather" and started["arguments"] == {"city": "Paris"}
    assert completed["call_id"] == started["call_id"] == "call_weather_1"
    assert completed["result"] == fake_openai.WEATHER | {"city": "Paris"}
    labels = {data.get("agent") for _, kind, data in seen.events if kind.startswith(("tool.", "message."))}
    assert labels == {"weather"}  # the SDK agent's name
    ended = seen.events[-1][2]
    assert ended["output"] == watcher.answer() and ended["output"].startswith("The weather tool says: ")
    assert ended["usage"]["input_tokens"] > 0 and ended["usage"]["output_tokens"] > 0
    assert [call.tools for call in fake_openai.calls()] == [["get_weather"]] * 2
    # A follow-up in the same session: the agent is given the session's earlier turns.
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        follow_up = await client.post(f"{watcher.url.removesuffix('/events')}/runs", json={"input": "Thanks!"})
        assert follow_up.status_code == 202, follow_up.text
        await asyncio.wait_for(Watcher(client, watcher.url).follow(), 60)
    sent = [(m["role"], m.get("content")) for m in fake_openai.calls()[-1].messages if m["role"] != "system"]
    assert sent == [("user", QUESTION), ("assistant", ended["output"]), ("user", "Thanks!")]


async def test_a_cancel_mid_answer_stops_the_model_s_stream(stack: Stack, llm: str) -> None:
    url = stack.gateway(TOKENTAIL_AGENTS=AGENTS)
    _worker(stack, llm, model="slow-400")  # 20 s of answer
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _start(client)
        following = asyncio.create_task(watcher.follow())
        await eventually(lambda: watcher.deltas() >= 3, within=60, what="the answer is streaming")
        sid = watcher.url.split("/sessions/")[1].split("/")[0]
        assert (await client.post(f"/v1/sessions/{sid}/cancel")).status_code == 202
        await asyncio.wait_for(following, 30)
    assert watcher.seen.events[-1][1] == "run.cancelled"
    answering = fake_openai.calls()[-1]
    await eventually(lambda: answering.disconnected, within=10, what="the model's stream was closed")
    assert not answering.finished, fake_openai.dumps()


async def test_a_worker_killed_mid_answer_is_taken_over_and_the_run_completes(stack: Stack, llm: str) -> None:
    stack.env["TOKENTAIL_LEASE_MS"] = "2000"
    url = stack.gateway(TOKENTAIL_AGENTS=AGENTS)
    doomed = _worker(stack, llm, model="slow-60")  # 3 s of answer
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _start(client)
        following = asyncio.create_task(watcher.follow())
        await eventually(lambda: watcher.deltas() >= 3, within=60, what="the answer is streaming")
        _worker(stack, llm, model="slow-60")
        doomed.kill()  # SIGKILL mid-answer
        await asyncio.wait_for(following, 60)
    seen = watcher.seen
    kinds = [kind for _, kind, _ in seen.events]
    assert seen.ids == list(range(1, len(seen.ids) + 1))
    assert kinds.count("run.retrying") == 1 and kinds[-1] == "run.completed"
    assert watcher.answer() == seen.events[-1][2]["output"]


# In-process, with the SDK's own test double (agents.testing.ScriptedModel) in place of a model.


class Recorder:
    """Stands in for the run's EventWriter: records what the agent streams, in order. `hold`, once
    set, makes the next delta wait forever (a write to Redis that the cancel lands in)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()

    async def delta(self, text: str, agent: str | None = None) -> None:
        self.events.append(("message.delta", {"text": text, "agent": agent}))
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()

    async def reasoning(self, text: str, agent: str | None = None) -> None:
        self.events.append(("reasoning.delta", {"text": text, "agent": agent}))

    async def emit(self, data: EventData) -> None:
        self.events.append((event_type_of(data), data.model_dump(exclude={"run_id"})))


def _context(recorder: Recorder, history: list[Turn] | None = None) -> RunContext:
    run = RunRecord(run_id="r", input="What is the weather in Paris?")
    return RunContext(cast(EventWriter, recorder), "s", run, history or [])


async def test_a_handoff_relabels_the_events_and_usage_adds_up_over_the_model_calls() -> None:
    from agents import Agent, RunConfig, function_tool
    from agents.testing import ScriptedModel, assistant_message, function_call
    from agents.usage import Usage

    from tokentail.frameworks.openai_agents import openai_agent

    def get_weather(city: str) -> dict[str, object]:
        """The weather in a city."""
        return {"city": city, "sky": "sunny"}

    model = ScriptedModel(
        [
            [function_call("transfer_to_forecaster", {}, call_id="handoff_1")],
            [function_call("get_weather", {"city": "Paris"}, call_id="call_1")],
            [assistant_message("Sunny in Paris.")],
        ],
        default_usage=Usage(requests=1, input_tokens=10, output_tokens=3, total_tokens=13),
    )
    forecaster = Agent(name="forecaster", model=model, tools=[function_tool(get_weather)])
    triage = Agent(name="triage", model=model, handoffs=[forecaster])
    recorder = Recorder()
    ctx = _context(
        recorder,
        [
            Turn(role="user", content="Hi", run_id="r0"),
            Turn(role="assistant", content="Hello!", run_id="r0", status="completed"),
        ],
    )
    await openai_agent(triage, run_config=RunConfig(tracing_disabled=True))(ctx)
    assert recorder.events == [
        (
            "tool.started",
            {"call_id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}, "agent": "forecaster"},
        ),
        (
            "tool.completed",
            {
                "call_id": "call_1",
                "result": {"city": "Paris", "sky": "sunny"},
                "duration_ms": ANY,
                "agent": "forecaster",
            },
        ),
        ("message.delta", {"text": "Sunny in Paris.", "agent": "forecaster"}),
    ]
    assert ctx.usage == {"input_tokens": 30, "output_tokens": 9}
    first = model.first_call
    assert first is not None and first.input == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]


async def test_a_cancel_while_an_event_is_being_written_still_stops_the_model_s_stream() -> None:
    """The SDK stops its run loop itself when the task is cancelled waiting on its queue; a cancel
    that lands anywhere else (here: writing a delta) is the adapter's to pass on, by result.cancel()."""
    from agents import Agent, RunConfig
    from agents.testing import ModelCall, ModelStep, ScriptedModel
    from openai.types.responses import ResponseStreamEvent, ResponseTextDeltaEvent

    from tokentail.frameworks.openai_agents import openai_agent

    closed = asyncio.Event()

    async def endless(call: ModelCall) -> AsyncIterator[ResponseStreamEvent]:
        try:
            for n in itertools.count():
                yield ResponseTextDeltaEvent(
                    type="response.output_text.delta",
                    item_id="m",
                    output_index=0,
                    content_index=0,
                    delta=f"word{n} ",
                    logprobs=[],
                    sequence_number=n,
                )
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    recorder = Recorder()
    recorder.hold = asyncio.Event()
    running = asyncio.ensure_future(
        openai_agent(
            Agent(name="a", model=ScriptedModel([ModelStep.stream(endless)])),
            run_config=RunConfig(tracing_disabled=True),
        )(_context(recorder))
    )
    await asyncio.wait_for(recorder.held.wait(), 10)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await asyncio.wait_for(closed.wait(), 10)
