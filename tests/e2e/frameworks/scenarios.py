"""What every framework adapter must do end to end, as scenarios each framework's tests run with its
own example: real gateway and worker processes, the example agents unchanged, and their OpenAI
client streaming from the local fake OpenAI server (fake_openai.py)."""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from tests.e2e.conftest import Stack
from tests.e2e.frameworks import fake_openai
from tests.e2e.watcher import Watcher
from tests.support.waiting import eventually, scaled

QUESTION = "What is the weather in Paris?"
Event = tuple[int | None, str, dict[str, Any]]


@dataclass
class Example:
    """A framework's example module on a stack: `agents` is TOKENTAIL_AGENTS, `env` what its
    workers need besides (a framework's telemetry switch, say)."""

    stack: Stack
    llm: str  # the fake OpenAI server's base URL
    agents: str
    env: dict[str, str] = field(default_factory=dict)

    def gateway(self) -> str:
        return self.stack.gateway(TOKENTAIL_AGENTS=self.agents)

    def worker(self, model: str = "gpt-test", output: Path | None = None) -> Any:
        """A worker whose example agents use `model` (`slow-<n>`: an answer `n` words longer, slowly);
        its log to the file `output`, else the test's."""
        return self.stack.worker(
            output,
            TOKENTAIL_AGENTS=self.agents,
            OPENAI_API_KEY=fake_openai.API_KEY,
            OPENAI_BASE_URL=self.llm,
            TOKENTAIL_EXAMPLE_MODEL=model,
            **self.env,
        )


async def _ask(client: httpx2.AsyncClient, agent: str, question: str = QUESTION) -> Watcher:
    created = await client.post("/v1/sessions", json={"input": question, "agent": agent})
    assert created.status_code == 201, created.text
    return Watcher(client, created.json()["events_url"])


def _assert_whole(watcher: Watcher) -> list[str]:
    """Ids 1..n with no gap or duplicate, and the run's output is the text it streamed."""
    seen = watcher.seen
    assert seen.ids == list(range(1, len(seen.ids) + 1))
    assert seen.events[-1][1] == "run.completed", seen.events[-1]
    assert watcher.answer() == seen.events[-1][2]["output"]
    return [kind for _, kind, _ in seen.events]


async def answer_with_the_weather_tool(example: Example, agent: str = "weather") -> list[Event]:
    """The example asked about the weather: it calls get_weather (shown live, whole), answers with the
    result, and reports usage; a follow-up in the session reaches the model with the earlier turns.
    Returns the first run's events, for what a framework adds (labels, an exact order)."""
    url = example.gateway()
    example.worker()
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _ask(client, agent)
        await asyncio.wait_for(watcher.follow(), scaled(60))
        events = watcher.seen.events
        kinds = _assert_whole(watcher)
        deltas = kinds.count("message.delta")
        assert deltas and kinds == [
            *("run.queued", "run.started", "tool.started", "tool.completed"),
            *["message.delta"] * deltas,
            "run.completed",
        ], kinds
        started = next(data for _, kind, data in events if kind == "tool.started")
        completed = next(data for _, kind, data in events if kind == "tool.completed")
        assert started["name"] == "get_weather" and started["arguments"] == {"city": "Paris"}
        assert completed["call_id"] == started["call_id"] == "call_weather_1"
        assert completed["result"] == fake_openai.WEATHER | {"city": "Paris"}
        ended = events[-1][2]
        tool_said = next(m["content"] for m in fake_openai.calls()[1].messages if m["role"] == "tool")
        assert ended["output"] == f"The weather tool says: {tool_said}."  # the answer told once
        assert ended["usage"]["input_tokens"] > 0 and ended["usage"]["output_tokens"] > 0

        follow_up = await client.post(f"{watcher.url.removesuffix('/events')}/runs", json={"input": "Thanks!"})
        assert follow_up.status_code == 202, follow_up.text
        await asyncio.wait_for(Watcher(client, watcher.url).follow(), scaled(60))
    sent = [(m["role"], m.get("content")) for m in fake_openai.calls()[-1].messages if m["role"] != "system"]
    assert sent == [("user", QUESTION), ("assistant", ended["output"]), ("user", "Thanks!")]
    return events


async def cancel_mid_answer(example: Example, agent: str = "weather") -> None:
    """A cancel mid-answer ends the run `run.cancelled` and closes the model's stream (the token spend
    stops), as the fake server saw."""
    url = example.gateway()
    example.worker(model="slow-400")  # 20 s of answer
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _ask(client, agent)
        following = asyncio.create_task(watcher.follow())
        await eventually(lambda: watcher.deltas() >= 3, within=60, what="the answer is streaming")
        assert (await client.post(f"{watcher.url.removesuffix('/events')}/cancel")).status_code == 202
        await asyncio.wait_for(following, scaled(30))
    assert watcher.seen.events[-1][1] == "run.cancelled"
    answering = fake_openai.calls()[-1]
    assert answering.messages[-1]["role"] == "tool"  # the answer's stream, after the tool call
    await eventually(lambda: answering.disconnected, within=10, what="the model's stream was closed")
    assert not answering.finished, fake_openai.dumps()


async def worker_killed_mid_answer(example: Example, agent: str = "weather", goes_on: bool = False) -> None:
    """A worker killed with SIGKILL mid-answer: another takes the run over and completes it, ids
    whole. An adapter that starts over (`run.retrying` once) calls the tool again; one that goes on
    from its last step (`goes_on`: LangGraph, from its last checkpoint) neither calls the tool nor
    asks the model for its tool call again: only the cut answer is asked again, and dropped."""
    example.stack.env["TOKENTAIL_LEASE_MS"] = "2000"
    url = example.gateway()
    doomed = example.worker(model="slow-60")  # 3 s of answer
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _ask(client, agent)
        following = asyncio.create_task(watcher.follow())
        await eventually(lambda: watcher.deltas() >= 3, within=60, what="the answer is streaming")
        example.worker(model="slow-60")
        doomed.kill()
        await asyncio.wait_for(following, scaled(60))
    kinds = _assert_whole(watcher)
    assert watcher.seen.events[-1][2]["output"].endswith(" word59")
    if goes_on:
        assert "run.retrying" not in kinds and kinds.count("run.continued") == 1
        assert kinds.count("tool.started") == kinds.count("tool.completed") == 1, "the tool ran once"
        (continued,) = watcher.seen.of("run.continued")
        assert continued["from_event_id"] < kinds.index("run.continued"), "the cut answer is dropped"
        asked_for_the_call = [call for call in fake_openai.calls() if call.messages[-1]["role"] != "tool"]
        assert len(asked_for_the_call) == 1, "the model was not asked again for the tool call"
        return
    assert kinds.count("run.retrying") == 1
    retried = kinds.index("run.retrying")  # the next attempt calls the tool again, once
    assert kinds[retried:].count("tool.started") == kinds[retried:].count("tool.completed") == 1
