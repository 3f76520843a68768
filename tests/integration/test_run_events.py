"""One run of a session followed on its own (`GET …/events?run=<id>&subtree=1`), through uvicorn on a
real Redis: a child's events and its descendants', with the session's ids, resumable with no gap and
no duplicate, ended when the subtree ended; and the session's state and `GET …/runs/{rid}` showing the
tree. The sub-agent runs are written straight into Redis (tests/support/children.py)."""

import asyncio
import json
from typing import Any

import httpx2
from click.testing import CliRunner

from tests.clients.sse_client import read_events
from tests.fixtures.stack import Gateway
from tests.support.children import Tree
from tests.support.gates import Gates
from tests.support.sessions import held, start_a_run
from tests.support.waiting import eventually, scaled
from tests.support.writes import AllWrites
from tokentail.cli import main
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.events import RunCancelled
from tokentail.shared.vocabulary.records import child_run_id


async def stored(store: SessionStore, session_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    """Every event of the session, as (id, event, data)."""
    events = await store.read(session_id, 0, 10_000)
    return [(event.seq, event.type.decode(), json.loads(event.data)) for event in events]


def of_runs(events: list[tuple[int, str, dict[str, Any]]], *run_ids: str) -> list[tuple[int, str, dict[str, Any]]]:
    return [event for event in events if event[2]["run_id"] in run_ids]


async def a_tree(runs: AllWrites) -> tuple[Tree, str, str, str]:
    """A session whose run spawned `a` (which spawned `a1`) and `b`, all of them streaming, interleaved."""
    session_id, root = await start_a_run(runs)
    tree = Tree(runs, session_id, root.run_id)
    await tree.say(root.run_id, "Let me ask two helpers. ")
    a = await tree.spawn(root.run_id, "researcher", call_id="c_a")
    b = await tree.spawn(root.run_id, "writer", call_id="c_b")
    await tree.say(a, "a says ")
    a1 = await tree.spawn(a, "fact-checker", call_id="c_a1")
    await tree.say(b, "b says ")
    await tree.say(a1, "a1 checks ")
    return tree, a, a1, b


async def test_a_child_and_its_descendants_alone_with_the_sessions_ids_until_they_end(
    gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites, store: SessionStore
) -> None:
    tree, a, a1, b = await a_tree(runs)
    url = f"/v1/sessions/{tree.session_id}/events"
    seen: list[tuple[int | None, str, dict[str, Any]]] = []
    following = asyncio.ensure_future(read_events(client, f"{url}?run={a}&subtree=1", on_event=seen.append))
    # Live: what follows the catch-up, from every run of the session; then the subtree's ends.
    await eventually(lambda: any(data.get("text") == "a1 checks " for _, _, data in seen))
    await tree.say(b, "more of b ")
    await tree.say(a1, "more of a1 ")
    await tree.say(tree.root, "still the parent ")
    await tree.end(a1, "checked")
    a2 = await tree.spawn(a, "second-opinion")  # spawned while followed: learnt from its run.spawned
    await tree.say(a2, "a2 thinks ")
    await tree.end(a, status="cancelled")  # a parent may end before its child (a cancel's cascade)
    await tree.say(b, "b goes on ")
    assert not following.done()  # `a2` is still running
    await tree.end(a2, status="cancelled", to_parent=False)
    received = await asyncio.wait_for(following, 10)  # ended by itself: `a` and `a1` ended
    assert received.status == 200
    assert received.events == of_runs(await stored(store, tree.session_id), a, a1, a2)
    assert [event for _, event, data in received.events if data["run_id"] == a1][:2] == ["run.spawned", "run.started"]

    # Nothing left of the subtree, though the session goes on: 204, as for a whole session that ended.
    after_end: dict[str, str | int] = {"run": a, "subtree": 1, "last_event_id": received.ids[-1]}
    assert (await client.get(url, params=after_end)).status_code == 204
    await tree.say(b, "b again ")
    assert (await client.get(url, params=after_end)).status_code == 204


async def test_a_resume_from_the_middle_knows_the_children_spawned_before_it(
    gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites, store: SessionStore
) -> None:
    tree, a, a1, b = await a_tree(runs)
    await tree.end(a1, "checked")
    await tree.end(a, "found")
    url = f"/v1/sessions/{tree.session_id}/events?run={a}&subtree=1"
    whole = of_runs(await stored(store, tree.session_id), a, a1)
    # From after each of the subtree's events in turn (a1's run.spawned is before most of them), by
    # header and by query: exactly the rest, then the end.
    for index, (event_id, _, _) in enumerate(whole[:-1]):
        if index % 2:
            received = await read_events(client, url, last_event_id=event_id)  # Last-Event-ID
        else:
            received = await read_events(client, f"{url}&last_event_id={event_id}")
        assert received.events == whole[index + 1 :], event_id
    # A client that dropped its connection halfway (after 3 events) goes on from its last id.
    first = await read_events(client, url, limit=3)
    rest = await read_events(client, url, last_event_id=first.ids[-1])
    assert first.events + rest.events == whole


async def test_a_run_alone_without_its_subtree(
    gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites, store: SessionStore
) -> None:
    tree, a, a1, b = await a_tree(runs)
    await tree.end(a1, "checked")
    await tree.end(b, "written")
    await tree.end(a, "found")
    events = await stored(store, tree.session_id)
    received = await read_events(client, f"/v1/sessions/{tree.session_id}/events?run={a}")
    assert received.events == of_runs(events, a)
    # The session's own run: its events only (its tool calls, not its children's events), ended by its end.
    root = asyncio.ensure_future(read_events(client, f"/v1/sessions/{tree.session_id}/events?run={tree.root}"))
    await tree.say(tree.root, "All done.")
    await tree.end_root("All done.")
    received = await asyncio.wait_for(root, 10)
    assert received.events == of_runs(await stored(store, tree.session_id), tree.root)
    assert "run.spawned" not in [event for _, event, _ in received.events]


async def test_ndjson_follows_a_subtree_too(
    gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites, store: SessionStore
) -> None:
    tree, a, a1, b = await a_tree(runs)
    await tree.end(a1, "checked")
    await tree.end(a, "found")
    answer = await client.get(
        f"/v1/sessions/{tree.session_id}/events",
        params={"run": a1, "subtree": "true"},
        headers={"Accept": "application/x-ndjson"},
    )
    lines = [json.loads(line) for line in answer.text.splitlines() if line]
    assert [(line["id"], line["event"], line["data"]) for line in lines] == of_runs(
        await stored(store, tree.session_id), a1
    )


async def test_an_unknown_run_is_404_and_subtree_alone_422(
    gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites
) -> None:
    tree, *_ = await a_tree(runs)
    url = f"/v1/sessions/{tree.session_id}/events"
    missing = await client.get(url, params={"run": "r_nosuchrun000"})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "run_not_found"
    alone = await client.get(url, params={"subtree": 1})
    assert alone.status_code == 422
    assert set(alone.json()["error"]) >= {"type", "message"}


async def test_the_state_and_a_run_show_the_tree(gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites) -> None:
    tree, a, a1, b = await a_tree(runs)
    await tree.end(a1, "checked")
    state = (await client.get(f"/v1/sessions/{tree.session_id}")).json()
    records = {run["run_id"]: run for run in state["runs"]}
    assert set(records) == {tree.root, a, a1, b}
    assert records[tree.root]["parent_run_id"] is None and records[tree.root]["children"] == [a, b]
    assert records[a]["parent_run_id"] == tree.root and records[a]["children"] == [a1]
    assert records[a1]["parent_run_id"] == a and records[a1]["children"] == []
    assert state["status"] == "running" and state["active_run_id"] == tree.root  # the session's own run

    shown = (await client.get(f"/v1/sessions/{tree.session_id}/runs/{a}")).json()
    assert {key: value for key, value in shown.items() if key != "child_runs"} == records[a]
    assert shown["child_runs"] == [
        {"run_id": a1, "name": "fact-checker", "agent": "fact-checker", "call_id": records[a1]["call_id"],
         "status": "completed", "children": []}
    ]  # fmt: skip
    root = (await client.get(f"/v1/sessions/{tree.session_id}/runs/{tree.root}")).json()
    assert [(child["run_id"], child["status"], child["children"]) for child in root["child_runs"]] == [
        (a, "running", [a1]),
        (b, "running", []),
    ]
    missing = await client.get(f"/v1/sessions/{tree.session_id}/runs/r_nosuchrun000")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "run_not_found"


async def test_the_cli_shows_the_children_nested_under_their_parents_tool_calls(
    gateway: Gateway, runs: AllWrites
) -> None:
    tree, a, a1, b = await a_tree(runs)
    await tree.say(a, "and found it\n")
    await tree.end(a1, "checked")
    await tree.end(b, "written")
    await tree.end(a, "found")
    await tree.say(tree.root, "Both answered.")
    await tree.end_root("Let me ask two helpers. Both answered.")
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["chat", "--url", gateway.url, "--session", tree.session_id]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == "Let me ask two helpers. Both answered.".split()
    lines = [line for line in result.stderr.splitlines() if line.startswith(("┌", "│", "└"))]
    assert lines == [
        "┌ researcher [c_a] (researcher): look it up",  # named with its parent's call
        "┌ writer [c_b] (writer): look it up",
        "│ researcher [c_a]: [running fact-checker {'input': 'look it up'}]",  # a child's tool call: its part's
        "│ ┌ fact-checker [c_a1] (fact-checker): look it up",
        "│ researcher [c_a]: a says and found it",  # whole lines (its first delta waited for the line's end)
        "│ │ fact-checker [c_a1]: a1 checks ",
        "│ └ fact-checker [c_a1] completed",
        "│ researcher [c_a]: [fact-checker done: checked]",
        "│ writer [c_b]: b says ",
        "└ writer [c_b] completed",
        "└ researcher [c_a] completed",
    ]


# With a worker's real spawns (tests/agents/spawning_agents.py): children held at their gates.
SPAWNING = {
    "echo": "tests.agents.spawning_agents:echo",
    "parent": "tests.agents.spawning_agents:two_children",
    "held_echo": "tests.agents.spawning_agents:held_echo",
    "held_parent": "tests.agents.spawning_agents:two_held_children",
}


async def _held_children(start_gateway: Any, start_worker: Any, gates: Gates) -> tuple[Gateway, str, str, list[str]]:
    """A gateway and a worker; a session whose run spawned two children, both held at their gates."""
    gateway: Gateway = await start_gateway(agents=SPAWNING)
    await start_worker(agents=SPAWNING)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        made = (await client.post("/v1/sessions", json={"input": "hi", "agent": "held_parent"})).json()
    sid, rid = made["session_id"], made["run_id"]
    children = [child_run_id(rid, "c_a"), child_run_id(rid, "c_b")]
    await eventually(lambda: all(gates.reached(child) for child in children), within=scaled(20))
    return gateway, sid, rid, children


async def test_a_spawned_child_followed_alone_ends_with_it_while_its_sibling_goes_on(
    start_gateway: Any, start_worker: Any, gates: Gates, store: SessionStore
) -> None:
    gateway, sid, rid, (a, b) = await _held_children(start_gateway, start_worker, gates)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        url = f"/v1/sessions/{sid}/events?run={a}&subtree=1"
        first = await read_events(client, url, limit=2)  # run.spawned, run.started: then the client drops
        following = asyncio.ensure_future(read_events(client, url, last_event_id=first.ids[-1]))
        gates.release(a)
        rest = await asyncio.wait_for(following, scaled(20))  # ended with `a`, though `b` is held
        child = (await client.get(f"/v1/sessions/{sid}/runs/{b}")).json()
        assert child["status"] == "running"
        assert [event for _, event, _ in first.events + rest.events] == [
            "run.spawned", "run.started", "message.delta", "message.delta", "run.completed"
        ]  # fmt: skip
        assert first.events + rest.events == of_runs(await stored(store, sid), a)
        gates.release(b)
        whole = await read_events(client, f"/v1/sessions/{sid}/events?run={rid}&subtree=1")
        assert whole.events == of_runs(await stored(store, sid), rid, a, b)
        assert (whole.events[-1][1], whole.events[-1][2]["run_id"]) == ("run.completed", rid)


async def test_a_subtree_followed_through_a_cancel_gets_every_descendants_end(
    start_gateway: Any, start_worker: Any, gates: Gates, store: SessionStore
) -> None:
    gateway, sid, rid, children = await _held_children(start_gateway, start_worker, gates)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        following = asyncio.ensure_future(read_events(client, f"/v1/sessions/{sid}/events?run={rid}&subtree=1"))
        assert (await client.post(f"/v1/sessions/{sid}/cancel")).status_code == 202
        received = await asyncio.wait_for(following, scaled(20))
    cancelled = {data["run_id"] for _, kind, data in received.events if kind == "run.cancelled"}
    assert cancelled == {rid, *children}  # whichever order they ended in
    assert received.events == of_runs(await stored(store, sid), rid, *children)


async def test_a_followed_subtree_outlives_its_sessions_run_until_its_last_child_ended(
    gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites, store: SessionStore
) -> None:
    # A cancel's cascade: the session's run ends at once (the session is idle then), its child a
    # moment later, by its own worker. A follower of the tree waits for that end; so does one that
    # comes in between, rather than hear 204.
    tree, a, a1, b = await a_tree(runs)
    await tree.end(a1, "checked")
    await tree.end(b, "written")
    url = f"/v1/sessions/{tree.session_id}/events?run={tree.root}&subtree=1"
    seen: list[tuple[int | None, str, dict[str, Any]]] = []
    following = asyncio.ensure_future(read_events(client, url, on_event=seen.append))
    ending = RunCancelled(run_id=tree.root, reason="cancelled by request")
    root_end = await (await held(runs, tree.session_id, tree.root)).append([], ending=ending)
    assert not (await store.stream_position(tree.session_id))[1]  # the session is idle
    await eventually(lambda: any(event_id == root_end for event_id, _, _ in seen))
    async with client.stream("GET", url, headers={"Last-Event-ID": str(root_end)}) as between:
        assert between.status_code == 200  # open (its head sent), not 204: `a` has not ended
        child_end = await tree.end(a, status="cancelled", to_parent=False)
        rest = (await asyncio.wait_for(between.aread(), 10)).decode()
    received = await asyncio.wait_for(following, 10)
    assert received.events == of_runs(await stored(store, tree.session_id), tree.root, a, a1, b)
    assert received.ids[-1] == child_end
    assert f"id: {child_end}\nevent: run.cancelled\n" in rest and rest.count("id: ") == 1


async def test_the_cli_nests_a_workers_real_children(start_gateway: Any, start_worker: Any) -> None:
    gateway: Gateway = await start_gateway(agents=SPAWNING)
    await start_worker(agents=SPAWNING)
    command = ["chat", "--url", gateway.url, "--agent", "parent", "hi"]
    result = await asyncio.to_thread(CliRunner().invoke, main, command)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Asking two. Got echo[a] and echo[b].\n"  # the session's run's answer alone
    nested = sorted(line for line in result.stderr.splitlines() if line.startswith(("┌", "│", "└")))
    assert nested == sorted(
        [
            "┌ echo [c_a] (echo): a",  # two children of one agent, told apart by their calls
            "│ echo [c_a]: echo[a]",
            "└ echo [c_a] completed",
            "┌ echo [c_b] (echo): b",
            "│ echo [c_b]: echo[b]",
            "└ echo [c_b] completed",
        ]
    )
