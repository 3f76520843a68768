"""A Haystack agent (examples/haystack_agent.py, unchanged) in real gateway and worker processes,
its OpenAIChatGenerator streaming from the local fake OpenAI server."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

pytest.importorskip("haystack")

from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks import fake_openai  # noqa: E402
from tests.e2e.watcher import Watcher  # noqa: E402
from tests.waiting import eventually  # noqa: E402

AGENTS = '{"weather": "examples.haystack_agent:weather"}'
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
        HAYSTACK_TELEMETRY_ENABLED="False",  # no posthog calls from the tests
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
    started = next(data for _, kind, data in seen.events if kind == "tool.started")
    completed = next(data for _, kind, data in seen.events if kind == "tool.completed")
    assert started["name"] == "get_weather" and started["arguments"] == {"city": "Paris"}
    assert completed["call_id"] == started["call_id"] == "call_weather_1"
    assert completed["result"] == fake_openai.WEATHER
    ended = seen.events[-1][2]
    assert ended["output"] == watcher.answer()
    assert ended["output"] == f"The weather tool says: {json.dumps(fake_openai.WEATHER)}."
    # Two model calls, each 20 prompt tokens (fake_openai's usage), from the streams' last chunks.
    assert ended["usage"]["input_tokens"] == 40 and ended["usage"]["output_tokens"] > 0, ended["usage"]
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
    assert answering.messages[-1]["role"] == "tool"  # the answer's stream, after the tool call
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
    assert kinds.count("run.retrying") == 1 and kinds[-1] == "run.completed", kinds
    retried = kinds.index("run.retrying")
    assert kinds[retried:].count("tool.started") == 1 and kinds[retried:].count("tool.completed") == 1
    ended = seen.events[-1][2]
    assert watcher.answer() == ended["output"] and ended["output"].endswith(" word59")
    assert ended["usage"]["input_tokens"] > 0 and ended["usage"]["output_tokens"] > 0
