"""Time travel: a fork at any event of a session, a run's inside included (`POST /v1/sessions/{id}/fork`
with `{"at": ...}`), on a real gateway, worker and Redis. The run goes on in the fork from that event:
what it recorded by then (model turns, tool results) is replayed, never done again; what came after is
done in the fork only; the source is untouched. The built-in loop on the scripted model, whose
calculator counts its runs by call id and waits at its call's gate (tests/agents/forking_agents.py)."""

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from redis.asyncio import Redis

from tests.fixtures.stack import Gateway
from tests.integration.test_branching import ended, sessions_in, stored
from tests.support.gates import Gates
from tests.support.waiting import eventually, scaled
from tokentail.cli import main
from tokentail.client import Tokentail
from tokentail.shared.plumbing.settings import Settings

KEY = "acme-key-0123456789abcdef"
OTHER_KEY = "beta-key-0123456789abcdef"
AUTH = {"api_keys": SecretStr(f"acme:{KEY},beta:{OTHER_KEY}"), "secret": SecretStr("s" * 40)}
AGENTS = {
    "gated": "tests.agents.forking_agents:GATED",
    "gated_parent": "tests.agents.forking_agents:gated_parent",
    "counting": "tests.agents.counting_agents:COUNTING",
}
TWO_CALLS = "What is 12 * 7 and 6 * 7?"  # the scripted model calls the calculator twice, in one turn


@pytest.fixture
async def gateway(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates, tool_runs: Path
) -> Gateway:
    await start_worker(agents=AGENTS, **AUTH)
    gateway: Gateway = await start_gateway(agents=AGENTS, **AUTH)
    return gateway


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=20) as c:
        yield c


def runs_of(tool_runs: Path) -> Counter[str]:
    """How many times the calculator ran, by call id."""
    return Counter(tool_runs.read_text().split())


async def events_of(redis: Redis, settings: Settings, session_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    return [(seq, kind.decode(), json.loads(data)) for seq, kind, data, _ in await stored(redis, settings, session_id)]


async def held_between_two_results(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings, gates: Gates, agent: str = "gated"
) -> tuple[str, str, list[str], int]:
    """A run of two calculator calls held after the first one's result: its session, run, the calls
    (the first done, the second at its gate) and the id of the first one's `tool.completed`. With `agent`
    `gated_parent`, that run is its child, and the run its parent."""
    made = (await http.post("/v1/sessions", json={"agent": agent, "input": TWO_CALLS})).json()
    session_id, run_id = made["session_id"], made["run_id"]

    async def calls() -> list[str]:
        events = await events_of(redis, settings, session_id)
        return [data["call_id"] for _, kind, data in events if kind == "tool.started" and data["name"] == "calculator"]

    async def two() -> bool:
        return len(await calls()) == 2

    await eventually(two, what="the two calls started")
    first, second = await calls()
    await eventually(lambda: gates.reached(first) and gates.reached(second), what="both calls at their gates")
    gates.release(first)

    async def completed() -> int:
        events = await events_of(redis, settings, session_id)
        found = [seq for seq, kind, data in events if kind == "tool.completed" and data["call_id"] == first]
        assert found, "no result yet"
        return found[0]

    at = await eventually(completed, what="the first call's result")
    return session_id, run_id, [first, second], at


async def test_a_fork_between_two_tool_results_runs_only_the_second_tool_again_and_leaves_the_source_whole(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings, gates: Gates, tool_runs: Path
) -> None:
    source, run_id, (first, second), at = await held_between_two_results(http, redis, settings, gates)
    before = await events_of(redis, settings, source)

    forked = await http.post(f"/v1/sessions/{source}/fork", json={"at": at})
    assert forked.status_code == 201, forked.text
    fork = forked.json()
    fork_id = fork["session_id"]
    assert fork["forked_from"] == {"session_id": source, "event_id": at}
    assert fork["active_run_id"] == run_id and fork["status"] in ("queued", "running")

    # The fork's run calls the second tool again (it had no result by then), never the first.
    await eventually(lambda: runs_of(tool_runs)[second] == 2, what="the second call run in the fork")
    gates.release(second)
    source_state, fork_state = await ended(http, source), await ended(http, fork_id)
    assert runs_of(tool_runs) == {first: 1, second: 2}

    # Up to `at`, the fork's events are the source's, byte for byte (and time); then its run goes on.
    source_events, fork_events = await stored(redis, settings, source), await stored(redis, settings, fork_id)
    assert fork_events[:at] == source_events[:at]
    started = json.loads(fork_events[at][2])
    assert fork_events[at][1] == b"run.started"
    assert started == {"run_id": run_id, "attempt": 1, "reason": "fork", "from_event_id": at}
    after = [(kind.decode(), json.loads(data).get("call_id")) for _, kind, data, _ in fork_events[at + 1 :]]
    assert ("tool.completed", second) in after and ("tool.started", first) not in after
    assert ("tool.completed", first) not in after  # the first result is the copy's: shown once
    assert fork_state["runs"][-1]["status"] == "completed"
    assert fork_state["runs"][-1]["output"] == source_state["runs"][-1]["output"]

    # The source went on as if nothing happened: what it had, untouched, and its own end.
    source_after = await events_of(redis, settings, source)
    assert source_after[: len(before)] == before
    assert source_state["runs"][-1]["status"] == "completed"

    # A fork of the run after it ended (its steps kept): the first tool's result is replayed again.
    again = await http.post(f"/v1/sessions/{source}/fork", json={"at": at})
    assert again.status_code == 201, again.text
    await ended(http, again.json()["session_id"])
    assert runs_of(tool_runs) == {first: 1, second: 3}


async def test_a_fork_inside_a_child_run_forks_the_tree_and_its_child_goes_on_with_nothing_done_twice(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings, gates: Gates, tool_runs: Path
) -> None:
    source, parent, (first, second), at = await held_between_two_results(http, redis, settings, gates, "gated_parent")
    events = await events_of(redis, settings, source)
    child = next(data["run_id"] for _, kind, data in events if kind == "run.spawned")

    forked = await http.post(f"/v1/sessions/{source}/fork", json={"at": at})
    assert forked.status_code == 201, forked.text
    fork_id = forked.json()["session_id"]
    assert forked.json()["active_run_id"] == parent
    # The child goes on in the fork (its lane there): it calls the second tool again, never the first.
    await eventually(lambda: runs_of(tool_runs)[second] == 2, what="the child's second call run in the fork")
    gates.release(second)
    source_state, fork_state = await ended(http, source), await ended(http, fork_id)
    assert runs_of(tool_runs) == {first: 1, second: 2}

    fork_events = await events_of(redis, settings, fork_id)
    assert fork_events[:at] == (await events_of(redis, settings, source))[:at]
    starts = {data["run_id"]: data for _, kind, data in fork_events[at:] if kind == "run.started"}
    assert starts[child] == {
        "run_id": child,
        "parent_run_id": parent,
        "attempt": 1,
        "reason": "fork",
        "from_event_id": at,
    }
    assert starts[parent]["reason"] in ("fork", "resume")  # its fork's start, then its resume after the child
    spawned = [data["run_id"] for _, kind, data in fork_events if kind == "run.spawned"]
    assert spawned == [child]  # found going by the parent's replay, never spawned again
    runs = {run["run_id"]: run for run in fork_state["runs"]}
    assert runs[child]["status"] == runs[parent]["status"] == "completed"
    assert runs[parent]["output"] == source_state["runs"][0]["output"]
    assert runs[parent]["output"].startswith("Asking. It said: ")

    # `continue: false`: the tree ends there, the child before its parent, and nothing runs.
    held = (await http.post(f"/v1/sessions/{source}/fork", json={"at": at, "continue": False})).json()
    ends = [data["run_id"] for _, kind, data in await events_of(redis, settings, held["session_id"])][at:]
    assert held["status"] == "idle" and ends == [child, parent]
    assert {run["status"] for run in held["runs"]} == {"cancelled"}
    assert runs_of(tool_runs) == {first: 1, second: 2}


async def test_a_fork_mid_answer_goes_on_from_its_text_and_overrides_change_only_what_follows(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    made = await http.post(
        "/v1/sessions", json={"agent": "counting", "input": "tell me about streams", "params": {"tokens": 60}}
    )
    source = made.json()["session_id"]
    state = await ended(http, source)
    answer = state["runs"][0]["output"]
    events = await events_of(redis, settings, source)
    deltas = [seq for seq, kind, _ in events if kind == "message.delta"]
    at = deltas[len(deltas) // 2]
    said = "".join(data["text"] for seq, kind, data in events if kind == "message.delta" and seq <= at)

    same = (await http.post(f"/v1/sessions/{source}/fork", json={"at": at})).json()
    longer = await http.post(f"/v1/sessions/{source}/fork", json={"at": at, "params": {"tokens": 90}})
    assert longer.status_code == 201, longer.text
    same_run = (await ended(http, same["session_id"]))["runs"][0]
    longer_run = (await ended(http, longer.json()["session_id"]))["runs"][0]
    # What the run had said by `at` is the answer's start in every fork: it goes on from there.
    assert same_run["output"] == answer
    assert longer_run["output"].startswith(said) and longer_run["output"] != answer
    assert len(longer_run["output"].split()) > len(answer.split())
    assert longer_run["params"] == {"tokens": 90}
    fork_events = await stored(redis, settings, longer.json()["session_id"])
    assert fork_events[:at] == (await stored(redis, settings, source))[:at]

    # `continue: false`: the fork holds the events and its run ends there, cancelled; nothing runs.
    held = (await http.post(f"/v1/sessions/{source}/fork", json={"at": at, "continue": False})).json()
    assert held["status"] == "idle" and held["runs"][0]["status"] == "cancelled"
    assert held["last_event_id"] == at + 1


async def test_a_fork_is_refused_with_nothing_made_past_the_end_across_tenants_and_for_bad_input(
    gateway: Gateway, http: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    made = (await http.post("/v1/sessions", json={"agent": "counting", "input": "What is 6 * 7?"})).json()
    source = made["session_id"]
    state = await ended(http, source)
    last = state["last_event_id"]
    kept = await sessions_in(redis, settings)

    past = await http.post(f"/v1/sessions/{source}/fork", json={"at": last + 1})
    assert past.status_code == 422 and "last event" in past.json()["error"]["message"]
    both = await http.post(f"/v1/sessions/{source}/fork", params={"after": 0}, json={"at": 1})
    assert both.status_code == 422
    assert (await http.post(f"/v1/sessions/{source}/fork", json={"at": -1})).status_code == 422
    assert (await http.post(f"/v1/sessions/{source}/fork", json={"at": 2, "agent": "nobody"})).status_code == 422
    ended_at = await http.post(f"/v1/sessions/{source}/fork", json={"at": last, "continue": True})
    assert ended_at.status_code == 422 and "nothing to continue" in ended_at.json()["error"]["message"]
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as other:
        theirs = await other.post(
            f"/v1/sessions/{source}/fork", json={"at": 2}, headers={"Authorization": f"Bearer {OTHER_KEY}"}
        )
        assert theirs.status_code == 404  # another tenant's session, as one that does not exist
    assert await sessions_in(redis, settings) == kept  # nothing made

    # At a turn's end, `at` is `after`: a fork with no run going.
    turn = await http.post(f"/v1/sessions/{source}/fork", json={"at": last})
    assert turn.status_code == 201 and turn.json()["status"] == "idle"


async def test_the_python_client_and_tokentail_chat_fork_at_an_event_and_follow_the_fork(
    gateway: Gateway, redis: Redis, settings: Settings, tool_runs: Path
) -> None:
    with Tokentail(gateway.url, api_key=KEY) as client:
        made = await asyncio.to_thread(client.create_session, "What is 6 * 7?", agent="counting")
        source = made.session_id
        state = await asyncio.to_thread(_idle, client, source)
    events = await events_of(redis, settings, source)
    at = next(seq for seq, kind, _ in events if kind == "tool.completed")
    answer = state["runs"][0]["output"]

    with Tokentail(gateway.url, api_key=KEY) as client:
        fork = await asyncio.to_thread(lambda: client.fork(source, at=at))
        assert fork["forked_from"] == {"session_id": source, "event_id": at}
        assert (await asyncio.to_thread(_idle, client, fork["session_id"]))["runs"][0]["output"] == answer
        with pytest.raises(ValueError, match="one of them"):
            client.fork(source, 0, at=at)

    chat = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["chat", "--url", gateway.url, "--api-key", KEY, "--session", source, "--fork-at", str(at)],
    )
    assert chat.exit_code == 0, chat.output
    assert chat.stdout.strip() == answer.removeprefix("Let me calculate that. ")  # what follows `at`: the answer
    assert f"[forked at event {at}: session s_" in chat.stderr
    assert runs_of(tool_runs) == {next(iter(runs_of(tool_runs))): 1}  # the calculator ran once, in the source


def _idle(client: Tokentail, session_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + scaled(20)
    while (state := client.get_session(session_id))["status"] != "idle":
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return state
