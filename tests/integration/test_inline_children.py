"""Inline children (docs/subagents-frameworks.md) through a gateway, a worker and Redis: a run whose
children are shown from inside its code goes on after a question from its record, reading its
children's events back from the session, and appends none of them twice."""

from typing import Any

import httpx2
import pytest

from tests.clients.sse_client import read_events
from tests.fixtures.stack import Gateway
from tests.support.sessions import waiting_for_input
from tokentail.shared.vocabulary.records import child_run_id

AGENTS = {"asks": "tests.agents.inline_children_agents:asks_between_children"}


@pytest.fixture
async def gateway(start_gateway: Any, start_worker: Any) -> Gateway:
    started: Gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    return started


async def test_a_run_going_on_after_a_question_appends_none_of_its_childrens_events_twice(gateway: Gateway) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        made = (await client.post("/v1/sessions", json={"input": "go", "agent": "asks"})).json()
        sid, rid = made["session_id"], made["run_id"]
        question = (await waiting_for_input(client, f"/v1/sessions/{sid}"))["pending_input"]
        url = f"/v1/sessions/{sid}/runs/{rid}/input"
        answered = await client.post(url, json={"input_id": question["input_id"], "answer": "yes"})
        assert answered.status_code == 202, answered.text
        received = await read_events(client, made["events_url"])
    one, two = child_run_id(rid, "c1"), child_run_id(rid, "c2")
    assert received.ids == list(range(1, len(received.ids) + 1))
    by_run: dict[str, list[tuple[str, Any]]] = {}
    for _, kind, data in received.events:
        by_run.setdefault(data["run_id"], []).append((kind, data.get("text")))
    assert by_run[one] == [
        ("run.spawned", None),
        ("run.started", None),
        ("message.delta", "one's answer"),
        ("run.completed", None),
    ]
    assert by_run[two] == [
        ("run.spawned", None),
        ("run.started", None),
        ("message.delta", "two starts"),
        ("message.delta", " and goes on with yes"),
        ("run.completed", None),
    ]
    completed = {data["run_id"]: data for _, kind, data in received.events if kind == "run.completed"}
    assert completed[two]["output"] == "two starts and goes on with yes" and completed[two]["parent_run_id"] == rid
    assert completed[rid]["output"] == "Before. After."
