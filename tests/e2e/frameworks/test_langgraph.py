"""A LangGraph graph and a LangChain chat model with a callback handler (examples/langgraph_agent.py)
in real gateway and worker processes, their OpenAI client streaming from the local fake OpenAI server."""

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

pytest.importorskip("langgraph")

from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks import fake_openai  # noqa: E402
from tests.e2e.watcher import Watcher  # noqa: E402
from tests.waiting import eventually  # noqa: E402

AGENTS = '{"weather": "examples.langgraph_agent:weather", "weather_chain": "examples.langgraph_agent:weather_chain"}'
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


async def _start(client: httpx2.AsyncClient, agent: str = "weather") -> Watcher:
    created = await client.post("/v1/sessions", json={"input": QUESTION, "agent": agent})
    assert created.status_code == 201, created.text
    return Watcher(client, created.json()["events_url"])


@pytest.mark.parametrize("agent", ["weather", "weather_chain"])  # a LangGraph graph; a LangChain chat model
async def test_the_answer_streams_with_the_plugin_call_live_and_usage(stack: Stack, llm: str, agent: str) -> None:
    url = stack.gateway(TOKENTAIL_AGENTS=AGENTS)
    _worker(stack, llm)
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        watcher = await _start(client, agent)
        await asyncio.wait_for(watcher.follow(), 60)
    seen = watcher.seen
    assert seen.ids == list(range(1, len(seen.ids) + 1))
    kinds = [kind for _, kind, _ in seen.events]
    assert kinds[:2] == ["run.queued", "run.started"] and kinds[-1] == "run.completed", kinds
    assert kinds.index("tool.started") < kinds.index("tool.completed") < kinds.index("message.delta")
    started = next(data for _, kind, data in seen.events if kind == "tool.started")
    completed = next(data for _, kind, data in seen.events if kind == "tool.completed")
    assert started["name"] == "get_weather" and started["arguments"] == {"city": "Paris"}
    assert completed["call_id"] == started["call_id"] == "call_weather_1"
    assert completed["result"] == fake_openai.WEATHER | {"city": "Paris"}
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


async def test_subgraph_events_carry_their_node_s_name_and_custom_writes_stream() -> None:
    # In-process: a graph whose node runs a subgraph that writes progress and data, and returns an
    # AI message with a tool call and the tool's answer, as a supervisor's worker would.
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.config import get_stream_writer
    from langgraph.graph import START, MessagesState, StateGraph

    from shared.records import RunRecord
    from tests.unit.test_writer import RecordingLease, _writer
    from tokentail.frameworks.langgraph import langgraph_agent
    from worker.context import RunContext

    def research(state: MessagesState) -> dict[str, Any]:
        write = get_stream_writer()
        write("Searching the archive")
        write({"found": 2})
        call = {"id": "call_1", "name": "search", "args": {"q": "tokentail"}}
        return {"messages": [AIMessage("", tool_calls=[call]), ToolMessage('{"hits": 2}', tool_call_id="call_1")]}

    inner = StateGraph(MessagesState)
    inner.add_node("research", research)
    inner.add_edge(START, "research")
    outer = StateGraph(MessagesState)
    outer.add_node("researcher", inner.compile())
    outer.add_edge(START, "researcher")

    lease = RecordingLease()
    ctx = RunContext(_writer(lease, 0), "s", RunRecord(run_id="r", input="find it"), history=[])
    await langgraph_agent(outer.compile())(ctx)
    await ctx.writer.flush()
    assert [(kind, data.get("agent")) for kind, data in lease.events] == [
        ("status", "researcher"),
        ("data.custom", "researcher"),
        ("tool.started", "researcher"),
        ("tool.completed", "researcher"),
    ]
    assert lease.events[1][1]["data"] == {"found": 2} and lease.events[3][1]["result"] == {"hits": 2}
