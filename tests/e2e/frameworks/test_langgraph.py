"""A LangGraph graph (examples/langgraph_agent.py) and a LangChain chat model with a callback handler
(examples/langchain_agent.py) in real gateway and worker processes, their OpenAI client streaming from
the local fake OpenAI server; and the graph mapping in process."""

import asyncio
import json
from typing import Any

import httpx2
import pytest

pytest.importorskip("langgraph")

from tests.clients.sse_client import read_events  # noqa: E402
from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks.scenarios import (  # noqa: E402
    Example,
    answer_with_the_weather_tool,
    cancel_mid_answer,
    worker_killed_mid_answer,
)
from tests.support.sessions import waiting_for_input  # noqa: E402
from tests.support.waiting import eventually, scaled  # noqa: E402

AGENTS = '{"weather": "examples.langgraph_agent:weather", "weather_chain": "examples.langchain_agent:weather"}'


@pytest.fixture
def example(stack: Stack, llm: str) -> Example:
    return Example(stack, llm, AGENTS)


@pytest.mark.parametrize("agent", ["weather", "weather_chain"])  # a LangGraph graph; a LangChain chat model
async def test_the_answer_streams_with_the_tool_call_live_and_usage(example: Example, agent: str) -> None:
    await answer_with_the_weather_tool(example, agent)


@pytest.mark.parametrize("agent", ["weather", "weather_chain"])
async def test_a_cancel_mid_answer_stops_the_model_s_stream(example: Example, agent: str) -> None:
    await cancel_mid_answer(example, agent)


async def test_a_worker_killed_mid_answer_goes_on_from_the_graph_s_last_checkpoint(example: Example) -> None:
    await worker_killed_mid_answer(example, goes_on=True)


async def test_subgraph_events_carry_their_node_s_name_and_custom_writes_stream() -> None:
    # In-process: a graph whose node runs a subgraph that writes progress and data, and returns an
    # AI message with a tool call and the tool's answer, as a supervisor's worker would.
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.config import get_stream_writer
    from langgraph.graph import START, MessagesState, StateGraph

    from tests.unit.worker.writes.test_writer import RecordingLease, _writer
    from tokentail.frameworks.langgraph import langgraph_agent
    from tokentail.shared.vocabulary.records import RunRecord
    from tokentail.worker.run.context import RunContext

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
    await langgraph_agent(outer.compile(), subgraphs_as_children=False)(ctx)  # the run's own events, labelled
    await ctx.this_attempt.writer.flush()
    assert [(kind, data.get("agent")) for kind, data in lease.events] == [
        ("status", "researcher"),
        ("data.custom", "researcher"),
        ("tool.started", "researcher"),
        ("tool.completed", "researcher"),
    ]
    assert lease.events[1][1]["data"] == {"found": 2} and lease.events[3][1]["result"] == {"hits": 2}


async def test_a_subgraph_streams_as_a_child_run_and_a_sync_node_s_tokens_are_its_own() -> None:
    """A supervisor's worker as LangGraph's docs write one (a compiled subgraph added as a node; its
    node a plain, sync function): a child run on the wire, by its namespace, its end when its node's
    update comes; its text is not the run's answer, the supervisor's is."""
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.config import get_stream_writer
    from langgraph.graph import START, MessagesState, StateGraph

    from tests.unit.worker.writes.test_writer import RecordingLease, _writer
    from tokentail.frameworks.langgraph import langgraph_agent
    from tokentail.shared.vocabulary.records import RunRecord, child_run_id
    from tokentail.worker.run.context import RunContext

    def research(state: MessagesState) -> dict[str, Any]:  # sync, as the tutorials write nodes
        get_stream_writer()("Searching the archive")
        call = {"id": "call_1", "name": "search", "args": {"q": "tokentail"}}
        found = [AIMessage("", tool_calls=[call]), ToolMessage('{"hits": 2}', tool_call_id="call_1")]
        return {"messages": [*found, AIMessage("Two hits.")]}

    inner = StateGraph(MessagesState)
    inner.add_node("research", research)
    inner.add_edge(START, "research")
    outer = StateGraph(MessagesState)
    outer.add_node("researcher", inner.compile())
    outer.add_node("supervisor", lambda state: {"messages": [AIMessage("The archive has two hits.")]})
    outer.add_edge(START, "researcher")
    outer.add_edge("researcher", "supervisor")

    lease = RecordingLease()
    ctx = RunContext(_writer(lease, 0), "s", RunRecord(run_id="r", input="find it"), history=[])
    await langgraph_agent(outer.compile(), subgraphs_as_children=True)(ctx)
    await ctx.this_attempt.writer.flush()
    spawned: dict[str, Any] = next(data for kind, data in lease.events if kind == "run.spawned")
    child = spawned["run_id"]
    namespace = spawned["cause"]["call_id"]
    assert namespace.startswith("researcher:") and child == child_run_id("r", namespace)
    assert spawned["parent_run_id"] == "r" and spawned["agent"] == spawned["name"] == "researcher"
    assert [(kind, data["run_id"], data.get("agent")) for kind, data in lease.events] == [
        ("run.spawned", child, "researcher"),  # (its `agent`: the subgraph's node)
        ("run.started", child, None),
        ("status", child, "researcher"),
        ("message.delta", child, "researcher"),  # (LangGraph sends a node's whole messages before its update)
        ("tool.started", child, "researcher"),
        ("tool.completed", child, "researcher"),
        ("run.completed", child, None),
        ("message.delta", "r", None),
    ]
    ended = next(data for kind, data in lease.events if kind == "run.completed")
    assert ended["output"] == "Two hits." and ended["parent_run_id"] == "r"
    assert ctx.this_attempt.output == "The archive has two hits."


# In process, on LangChain's fake chat model (streaming its tool calls: tests/e2e/frameworks/test_langchain.py)
# in a ReAct graph written as LangGraph's tutorials write one.


def _react(model: Any, tools: list[Any], **tool_node: Any) -> Any:
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    async def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(tools, **tool_node))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    return graph.compile()


async def test_a_react_graph_s_tool_call_tokens_and_usage_in_order() -> None:
    from langchain_core.messages import AIMessage

    from tests.e2e.frameworks.test_langchain import (
        SEEN,
        StreamingFakeChatModel,
        context,
        get_weather,
        usage,
        weather_call,
    )
    from tokentail.frameworks.langgraph import langgraph_agent
    from tokentail.shared.vocabulary.records import Turn

    SEEN.clear()
    replies = iter([weather_call(), AIMessage("Sunny in Paris.", usage_metadata=usage(20, 4))])
    ctx, lease = context(
        [Turn(role="user", content="Hi", run_id="r1"), Turn(role="assistant", content="Hello!", run_id="r1")]
    )
    await langgraph_agent(_react(StreamingFakeChatModel(messages=replies), [get_weather]))(ctx)
    await ctx.this_attempt.writer.flush()
    kinds = [kind for kind, _ in lease.events]  # the writer may join tokens into fewer deltas
    assert kinds[:2] == ["tool.started", "tool.completed"] and set(kinds[2:]) == {"message.delta"}, kinds
    started, completed = lease.events[0][1], lease.events[1][1]
    assert started == {"run_id": "r", "call_id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    assert completed["call_id"] == "call_1" and completed["result"] == {"city": "Paris", "sky": "sunny"}
    assert "".join(lease.texts()) == "Sunny in Paris."  # once: not again from the node's update
    assert ctx.this_attempt.meter.usage == {"input_tokens": 30, "output_tokens": 9}
    assert [m.content for m in SEEN[0]] == ["Hi", "Hello!", "Weather in Paris?"]


async def test_a_steer_sent_during_a_pass_goes_into_the_graph_s_state_and_the_graph_goes_on_with_it() -> None:
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool

    from tests.e2e.frameworks.test_langchain import SEEN, StreamingFakeChatModel, context, weather_call
    from tokentail.frameworks.langgraph import CHECKPOINTS, langgraph_agent

    SEEN.clear()
    ctx, lease = context()

    @tool  # type: ignore[untyped-decorator]  # Any where LangChain is not installed
    def get_weather(city: str) -> dict[str, object]:
        """The current weather in a city."""
        lease.steer("in French")  # sent while the tool runs
        return {"city": city, "sky": "sunny"}

    replies = iter([weather_call(), AIMessage("Sunny."), AIMessage(" Ensoleillé.")])
    await langgraph_agent(_react(StreamingFakeChatModel(messages=replies), [get_weather]))(ctx)
    await ctx.this_attempt.writer.flush()
    assert "".join(lease.texts()) == "Sunny. Ensoleillé."
    assert [kind for kind, _ in lease.events].count("steer.applied") == 1
    assert len(SEEN) == 3 and [m.content for m in SEEN[2]][-2:] == ["Sunny.", "in French"]  # once, at the end
    assert lease.steps["steers#0"] and json.loads(lease.steps[CHECKPOINTS])["steers_taken"] == 1


async def test_a_graph_that_takes_no_steers_leaves_them_to_fail() -> None:
    from langchain_core.messages import AIMessage

    from tests.e2e.frameworks.test_langchain import StreamingFakeChatModel, context, get_weather
    from tokentail.frameworks.langgraph import langgraph_agent

    ctx, lease = context()
    lease.steer("in French")
    replies = iter([AIMessage("Sunny.")])
    await langgraph_agent(_react(StreamingFakeChatModel(messages=replies), [get_weather]), steer_input=None)(ctx)
    assert lease.steers == ["in French"] and not lease.inbox.listening  # its run's end fails it not_supported


async def test_a_tool_message_with_status_error_is_a_failed_call() -> None:
    from langchain_core.messages import AIMessage

    from tests.e2e.frameworks.test_langchain import StreamingFakeChatModel, context, get_weather, weather_call
    from tokentail.frameworks.langgraph import langgraph_agent

    replies = iter([weather_call(city="Atlantis"), AIMessage("No such city.")])
    graph = _react(StreamingFakeChatModel(messages=replies), [get_weather], handle_tool_errors=True)
    ctx, lease = context()
    await langgraph_agent(graph)(ctx)
    await ctx.this_attempt.writer.flush()
    assert [kind for kind, _ in lease.events][:2] == ["tool.started", "tool.failed"]
    assert lease.events[1][1]["call_id"] == "call_1" and "no such city" in str(lease.events[1][1]["error"])
    assert "".join(lease.texts()) == "No such city."


async def test_a_tool_that_raises_through_the_graph_ends_its_call_as_failed() -> None:
    # LangGraph's ToolNode raises a tool's own exception again by default: the run fails, and the
    # stream does not leave the call open.
    from langchain_core.messages import AIMessage

    from tests.e2e.frameworks.test_langchain import StreamingFakeChatModel, context, get_weather, weather_call
    from tokentail.frameworks.langgraph import langgraph_agent

    replies = iter([weather_call(city="Atlantis"), AIMessage("unreached")])
    ctx, lease = context()
    with pytest.raises(ValueError, match="no such city"):
        await langgraph_agent(_react(StreamingFakeChatModel(messages=replies), [get_weather]))(ctx)
    await ctx.this_attempt.writer.flush()
    assert [(kind, data["call_id"]) for kind, data in lease.events] == [
        ("tool.started", "call_1"),
        ("tool.failed", "call_1"),
    ]
    assert lease.events[1][1]["error"] == "no such city"


async def test_a_cancel_while_a_tool_runs_ends_its_call_as_cancelled() -> None:
    from langchain_core.tools import tool

    from tests.e2e.frameworks.test_langchain import StreamingFakeChatModel, context, weather_call
    from tokentail.frameworks.langgraph import langgraph_agent

    @tool  # type: ignore[untyped-decorator]  # Any where LangChain is not installed
    async def get_weather(city: str) -> str:
        """Never answers."""
        await asyncio.Event().wait()
        return "unreached"

    ctx, lease = context()
    run = asyncio.ensure_future(
        langgraph_agent(_react(StreamingFakeChatModel(messages=iter([weather_call()])), [get_weather]))(ctx)
    )
    await eventually(lambda: [kind for kind, _ in lease.events] == ["tool.started"], what="the tool runs")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await ctx.this_attempt.writer.flush()
    assert [kind for kind, _ in lease.events] == ["tool.started", "tool.failed"]
    assert lease.events[1][1]["error"] == "cancelled"


async def test_an_ai_message_a_node_writes_itself_is_streamed_once() -> None:
    # No model: a node (here in a subgraph) returns its own AI message; LangGraph's `messages` mode
    # sends it whole, once, though the subgraph's node in the parent returns it again.
    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    from tests.e2e.frameworks.test_langchain import context
    from tokentail.frameworks.langgraph import langgraph_agent

    inner = StateGraph(MessagesState)
    inner.add_node("greet", lambda state: {"messages": [AIMessage("Hello from a node.")]})
    inner.add_edge(START, "greet")
    outer = StateGraph(MessagesState)
    outer.add_node("greeter", inner.compile())
    outer.add_edge(START, "greeter")
    ctx, lease = context()
    await langgraph_agent(outer.compile(), subgraphs_as_children=False)(ctx)  # (the greeter's text: the answer)
    await ctx.this_attempt.writer.flush()
    assert [(kind, data) for kind, data in lease.events] == [
        ("message.delta", {"run_id": "r", "text": "Hello from a node.", "agent": "greeter"})
    ]


async def test_the_session_s_turns_are_not_told_again_when_a_node_returns_them() -> None:
    # A state without a reducer, whose node returns the whole list of messages: LangGraph's
    # `messages` mode sends each message it has not seen; the session's turns carry ids, so it knows
    # them for the input they are, and only the node's own answer streams.
    from typing import TypedDict

    from langchain_core.messages import AIMessage, AnyMessage
    from langgraph.graph import START, StateGraph

    from tests.e2e.frameworks.test_langchain import context
    from tokentail.frameworks.langgraph import langgraph_agent
    from tokentail.shared.vocabulary.records import Turn

    class State(TypedDict):
        messages: list[AnyMessage]

    async def canned(state: State) -> dict[str, Any]:
        return {"messages": [*state["messages"], AIMessage("We open at nine.")]}

    builder = StateGraph(State)
    builder.add_node("canned", canned)
    builder.add_edge(START, "canned")
    turns = [
        Turn(role="user", content="Hi", run_id="r1"),
        Turn(role="assistant", content="Hello!", run_id="r1", status="completed"),
    ]
    ctx, lease = context(turns, question="When do you open?")
    await langgraph_agent(builder.compile())(ctx)
    await ctx.this_attempt.writer.flush()
    assert lease.texts() == ["We open at nine."]


async def test_an_interrupt_asks_through_tokentail_and_the_graph_resumes_on_another_worker(stack: Stack) -> None:
    stack.env |= {"TOKENTAIL_AGENTS": '{"emailer": "tests.e2e.frameworks.interrupt_graph:agent"}'}
    url = stack.gateway()
    asker = stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        made = (await client.post("/v1/sessions", json={"input": "email Bob", "agent": "emailer"})).json()
        sid, rid = made["session_id"], made["run_id"]

        pending = (await waiting_for_input(client, f"/v1/sessions/{sid}"))["pending_input"]
        assert (pending["kind"], pending["prompt"]) == ("approval", "Send the email?")
        asker.kill()  # the worker that ran the graph is gone; its checkpoints are in Redis
        asker.wait()
        stack.worker()
        await asyncio.to_thread(stack.wait_for_workers, 1)
        answer = {"input_id": pending["input_id"], "answer": {"approved": True}}
        assert (await client.post(f"/v1/sessions/{sid}/runs/{rid}/input", json=answer)).status_code == 202
        received = await read_events(client, made["events_url"])
    texts = [data["text"] for _, kind, data in received.events if kind == "message.delta"]
    assert "".join(texts) == "Drafted the email. Sent."  # the draft node is not run (nor shown) again
    assert received.events[-1][1] == "run.completed" and received.events[-1][2]["output"] == "Drafted the email. Sent."


async def test_interrupts_in_parallel_nodes_are_questions_open_at_once_and_resume_the_graph_with_each_answer(
    stack: Stack,
) -> None:
    stack.env |= {"TOKENTAIL_AGENTS": '{"emailer": "tests.e2e.frameworks.interrupt_graph:parallel_agent"}'}
    url = stack.gateway()
    asker = stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        made = (await client.post("/v1/sessions", json={"input": "email Bob", "agent": "emailer"})).json()
        sid, rid = made["session_id"], made["run_id"]
        state = await waiting_for_input(client, f"/v1/sessions/{sid}")
        asked = {q["prompt"]: q["input_id"] for q in state["pending_inputs"]}
        assert sorted(asked) == ["Archive the thread?", "Send the email?"]
        asker.kill()  # the worker that ran the graph is gone; its checkpoints are in Redis
        asker.wait()
        stack.worker()
        for prompt, approved in (("Archive the thread?", False), ("Send the email?", True)):  # in either order
            answer = {"input_id": asked[prompt], "answer": {"approved": approved}}
            assert (await client.post(f"/v1/sessions/{sid}/runs/{rid}/input", json=answer)).status_code == 202
        received = await read_events(client, made["events_url"])
    text = "".join(data["text"] for _, kind, data in received.events if kind == "message.delta")
    # Each node resumed with its own answer; the draft node is not run (nor shown) again.
    assert text in ("Drafted the email. Sent. Not archived.", "Drafted the email. Not archived.Sent. "), text
    assert received.events[-1][1] == "run.completed" and received.events[-1][2]["output"] == text


async def test_a_synchronous_langchain_call_fails_its_run_at_once_and_hangs_neither_the_worker_nor_its_runs(
    stack: Stack, llm: str
) -> None:
    example = Example(stack, llm, AGENTS[:-1] + ', "predict": "tests.e2e.frameworks.sync_langchain_agent:predict"}')
    url = example.gateway()
    example.worker(model="slow-60")  # 3 s of answer
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        steady = (
            await client.post("/v1/sessions", json={"input": "Weather in Paris?", "agent": "weather_chain"})
        ).json()
        await eventually(lambda: _running(client, steady["session_id"]), within=30, what="the steady run streams")
        wrong = (await client.post("/v1/sessions", json={"input": "Weather?", "agent": "predict"})).json()
        failed = await asyncio.wait_for(read_events(client, wrong["events_url"]), scaled(20))
        error = failed.events[-1][2]["error"]
        assert failed.events[-1][1] == "run.failed" and error["type"] == "blocked_event_loop", failed.events[-1]
        assert "use ainvoke or astream" in error["message"]
        finished = await asyncio.wait_for(read_events(client, steady["events_url"]), scaled(60))
        assert finished.events[-1][1] == "run.completed" and "run.retrying" not in [k for _, k, _ in finished.events]
        again = (await client.post("/v1/sessions", json={"input": "And in Rome?", "agent": "weather_chain"})).json()
        assert (await asyncio.wait_for(read_events(client, again["events_url"]), scaled(60))).events[-1][
            1
        ] == "run.completed"


async def _running(client: httpx2.AsyncClient, session_id: str) -> bool:
    return bool((await client.get(f"/v1/sessions/{session_id}")).json()["status"] == "running")
