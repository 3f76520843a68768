"""Tools and bring-your-own agents, end to end through the gateway and a worker."""

from typing import Any

import httpx2
import pytest

from tests.clients.sse_client import read_events
from tokentail.worker.run.job import NO_ANSWER


async def _run(client: httpx2.AsyncClient, **body: Any) -> list[tuple[int | None, str, dict[str, Any]]]:
    response = await client.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    received = await read_events(client, response.json()["events_url"])
    assert received.ids == list(range(1, len(received.ids) + 1))
    return received.events


def _text(events: list[tuple[int | None, str, dict[str, Any]]]) -> str:
    return "".join(data["text"] for _, kind, data in events if kind == "message.delta")


async def test_the_offline_model_shows_tool_progress_when_asked_to_calculate(
    start_gateway: Any, start_worker: Any
) -> None:
    gateway = await start_gateway()
    await start_worker()
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        events = await _run(client, input="What is 12 * (3 + 4)?", params={"tokens": 20, "tokens_per_second": 0})
    kinds = [kind for _, kind, _ in events]
    assert kinds[:3] == ["run.queued", "run.started", "message.delta"]
    assert kinds.index("tool.started") < kinds.index("tool.completed") < kinds.index("run.completed")
    completed = next(data for _, kind, data in events if kind == "tool.completed")
    assert completed["result"] == 84 and completed["duration_ms"] >= 0
    assert "The calculator says 84." in _text(events)
    assert events[-1][2]["output"] == _text(events)


async def test_a_bring_your_own_agent_streams_status_tools_and_text(start_gateway: Any, start_worker: Any) -> None:
    agents = {"support": "examples.support_agent:support"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        events = await _run(client, input="Where is my order A-1001?", agent="support")
    kinds = [kind for _, kind, _ in events]
    assert kinds == [
        "run.queued", "run.started", "status", "tool.started", "tool.completed", "status",
        *["message.delta"] * kinds.count("message.delta"), "run.completed",
    ]  # fmt: skip
    assert next(d for _, k, d in events if k == "tool.started")["arguments"] == {"order_id": "A-1001"}
    assert _text(events).strip() == "Order A-1001 is shipped on 18 November."


async def test_the_planner_of_docs_subagents_asks_two_researchers_as_child_runs(
    start_gateway: Any, start_worker: Any
) -> None:
    agents = {"planner": "examples.planner_agents:planner", "researcher": "examples.planner_agents:researcher"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        events = await _run(client, input="Tell me about the moon", agent="planner")
    assert [kind for _, kind, _ in events].count("run.spawned") == 2
    tides, moon = "The Moon's gravity, and the Sun's, pulling on the oceans.", "About 384,400 km on average."
    assert events[-1][2]["output"] == f"Asking two researchers. {tides}\n{moon}"


async def test_an_agent_that_cannot_be_imported_fails_the_run_clearly(start_gateway: Any, start_worker: Any) -> None:
    agents = {"broken": "examples.no_such_module:agent"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        events = await _run(client, input="hi", agent="broken")
    assert events[-1][1] == "run.failed"
    assert events[-1][2]["error"]["type"] == "invalid_request"
    assert "cannot import 'examples.no_such_module:agent'" in events[-1][2]["error"]["message"]


async def test_a_tool_that_raises_out_of_the_agent_ends_its_call_failed_before_the_run(
    start_gateway: Any, start_worker: Any
) -> None:
    # A framework that lets a tool's exception end its run (PydanticAI) left the call open.
    agents = {"raising": "tests.agents.slow_agent:raising_tool_agent"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        events = await _run(client, input="Weather?", agent="raising")
    assert [kind for _, kind, _ in events] == ["run.queued", "run.started", "tool.started", "tool.failed", "run.failed"]
    assert events[3][2]["call_id"] == "call_1" and events[3][2]["error"] == "weather service unavailable"


QUIET = {
    "silent": "tests.agents.quiet_agents:silent",
    "thinking_only": "tests.agents.quiet_agents:thinking_only",
    "tool_only": "tests.agents.quiet_agents:tool_only",
    "data_only": "tests.agents.quiet_agents:data_only",
}


@pytest.mark.parametrize(
    ("agent", "says_so"),
    [("silent", True), ("thinking_only", True), ("assistant", True), ("tool_only", False), ("data_only", False)],
)
async def test_a_run_whose_agent_answered_nothing_says_so_before_it_completes(
    start_gateway: Any, start_worker: Any, agent: str, says_so: bool
) -> None:
    # An empty `output` is never silent: a run that showed no text, tool call or data says so in a
    # status event, whatever its agent (here the built-in one too: the scripted model asked for 0 tokens).
    gateway = await start_gateway(agents=QUIET)
    await start_worker(agents=QUIET)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        events = await _run(client, input="hello", agent=agent, params={"tokens": 0} if agent == "assistant" else {})
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "run.completed" and events[-1][2]["output"] == ""
    told = [data["text"] for _, kind, data in events if kind == "status" and data["text"] == NO_ANSWER]
    assert told == ([NO_ANSWER] if says_so else []), kinds
    if says_so:
        assert kinds[-2] == "status"  # the last thing before the run's end
