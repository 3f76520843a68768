"""A LangGraph graph and a LangChain chat model with a callback handler (examples/langgraph_agent.py)
in real gateway and worker processes, their OpenAI client streaming from the local fake OpenAI server."""

from typing import Any

import pytest

pytest.importorskip("langgraph")

from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks.scenarios import (  # noqa: E402
    Example,
    answer_with_the_weather_tool,
    cancel_mid_answer,
    worker_killed_mid_answer,
)

AGENTS = '{"weather": "examples.langgraph_agent:weather", "weather_chain": "examples.langgraph_agent:weather_chain"}'


@pytest.fixture
def example(stack: Stack, llm: str) -> Example:
    return Example(stack, llm, AGENTS)


@pytest.mark.parametrize("agent", ["weather", "weather_chain"])  # a LangGraph graph; a LangChain chat model
async def test_the_answer_streams_with_the_tool_call_live_and_usage(example: Example, agent: str) -> None:
    await answer_with_the_weather_tool(example, agent)


async def test_a_cancel_mid_answer_stops_the_model_s_stream(example: Example) -> None:
    await cancel_mid_answer(example)


async def test_a_worker_killed_mid_answer_is_taken_over_and_the_run_completes(example: Example) -> None:
    await worker_killed_mid_answer(example)


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
