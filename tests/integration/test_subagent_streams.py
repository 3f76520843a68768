"""A sub-agent tree's events, written to a real Redis stream (the parent's and its children's,
interleaved, a few per append), followed live through a real gateway by the UI protocols' streams
(the hub, the feed, the route's renderer). The parent is cancelled while its children stream: a
cancel's cascade may store the children's ends after the parent's, so the streams end them with it.
(The children's events go through the parent's lease here: a child's own lease, and its own end,
come with the worker's spawn.) What each protocol makes of a tree is tested event by event in
tests/unit/gateway/protocols/*/test_*_subagents.py and judged by the JS clients in tests/node."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from tests.integration.test_chat_protocols import Frame, sse_frames
from tests.support.sessions import make_run
from tests.support.waiting import TIMEOUT, eventually
from tests.support.writes import AllWrites
from tokentail.shared.vocabulary.events import CANCELLED_BY_REQUEST, RunCancelled
from tokentail.worker.writes.run_writes import RunLease

CHILD_A, CHILD_B = "r_childAAAAAA", "r_childBBBBBB"


def _spawned(parent: str, child: str, call_id: str) -> list[tuple[str, str]]:
    return [
        ("tool.started", json.dumps({"run_id": parent, "call_id": call_id, "name": "researcher", "arguments": {}})),
        (
            "run.spawned",
            json.dumps(
                {
                    "run_id": child,
                    "parent_run_id": parent,
                    "agent": "researcher",
                    "name": "researcher",
                    "input": "look",
                    "cause": {"type": "tool_call", "call_id": call_id},
                }
            ),
        ),
        ("run.started", json.dumps({"run_id": child, "attempt": 1, "parent_run_id": parent})),
    ]


def _delta(run_id: str, text: str) -> tuple[str, str]:
    return "message.delta", json.dumps({"run_id": run_id, "text": text})


async def _write_tree(runs: AllWrites, session_id: str, opened: asyncio.Event, shown: asyncio.Event) -> str:
    """A parent run started under a lease; once the stream is open, its two children's events
    appended through it, interleaved, a few at a time (as a worker's ticks append them), each append
    once the stream showed the last (so each is live, in a read of its own); then its cancel."""
    run = make_run("two questions")
    await runs.queue_run(session_id, run)
    assert await runs.start_run(session_id, run.run_id, run.run_id, token="lease-1") is not None
    lease = RunLease(runs, session_id, run.run_id, "lease-1")
    parent = run.run_id
    await opened.wait()
    appends = [
        [_delta(parent, "Asking two."), *_spawned(parent, CHILD_A, "c1")],
        _spawned(parent, CHILD_B, "c2"),
        [_delta(CHILD_A, "a1"), _delta(CHILD_B, "b1")],
        [_delta(CHILD_A, "a2")],
        [_delta(CHILD_B, "b2")],
    ]
    for events in appends:
        shown.clear()
        await lease.append(events)
        await asyncio.wait_for(shown.wait(), TIMEOUT)
    await lease.append([], ending=RunCancelled(run_id=parent, reason=CANCELLED_BY_REQUEST))
    return parent


async def _follow(
    client: httpx2.AsyncClient, runs: AllWrites, url: str, done: Callable[[list[Any]], bool]
) -> tuple[str, list[Any]]:
    """The stream at `url`, opened once the parent run is going, while the tree is written."""
    session_id = (await client.post("/v1/sessions", json={"chat_id": "tree"})).json()["session_id"]
    opened, shown = asyncio.Event(), asyncio.Event()
    writing = asyncio.create_task(_write_tree(runs, session_id, opened, shown))
    await eventually(lambda: _going(client, session_id), what="the parent run started")
    seen = 0

    def until(got: list[Frame]) -> bool:
        nonlocal seen
        if len(got) > seen:
            seen = len(got)
            opened.set()
            shown.set()
        return done([data for _, data in got])

    async with client.stream("GET", url) as response:
        assert response.status_code == 200, await response.aread()
        frames = await sse_frames(response, until=until)
    return await writing, [data for _, data in frames if data is not None]


async def _going(client: httpx2.AsyncClient, session_id: str) -> None:
    state = (await client.get(f"/v1/sessions/{session_id}")).json()
    assert state["active_run_id"] is not None and state["status"] == "running"


@pytest.mark.ag_ui
async def test_an_ag_ui_thread_stream_shows_the_tree_live(client: httpx2.AsyncClient, runs: AllWrites) -> None:
    parent, events = await _follow(
        client, runs, "/v1/ag-ui/tree", lambda got: any(e and e["type"] == "RUN_FINISHED" for e in got)
    )
    tagged = [(e["type"], e.get("subagentRunId")) for e in events if e["type"].startswith(("SUBAGENT", "TEXT"))]
    assert tagged == [
        ("TEXT_MESSAGE_START", None), ("TEXT_MESSAGE_CONTENT", None), ("TEXT_MESSAGE_END", None),
        ("SUBAGENT_STARTED", CHILD_A), ("SUBAGENT_STARTED", CHILD_B),
        ("TEXT_MESSAGE_START", CHILD_A), ("TEXT_MESSAGE_CONTENT", CHILD_A),
        ("TEXT_MESSAGE_START", CHILD_B), ("TEXT_MESSAGE_CONTENT", CHILD_B),
        ("TEXT_MESSAGE_CONTENT", CHILD_A), ("TEXT_MESSAGE_CONTENT", CHILD_B),
        # the cancel: the subagents closed (in spawn order, each after its own), before the run's end
        ("TEXT_MESSAGE_END", CHILD_A), ("SUBAGENT_ERROR", CHILD_A),
        ("TEXT_MESSAGE_END", CHILD_B), ("SUBAGENT_ERROR", CHILD_B),
    ]  # fmt: skip
    assert events[-1] == {"type": "RUN_FINISHED", "threadId": "tree", "runId": parent, "outcome": {"type": "cancelled"}}


@pytest.mark.ai_sdk
async def test_an_ai_sdk_chat_stream_shows_each_child_as_its_call_s_output(
    client: httpx2.AsyncClient, runs: AllWrites
) -> None:
    _, parts = await _follow(
        client, runs, "/v1/ai-sdk/chat/tree/stream", lambda got: any(p and p["type"] == "abort" for p in got)
    )
    outputs = [
        (part["toolCallId"], [inner["text"] for inner in part["output"]["parts"]])
        for part in parts
        if part["type"] == "tool-output-available" and part["output"]["parts"]
    ]
    assert outputs[-2:] == [("c1", ["a1a2"]), ("c2", ["b1b2"])]  # preliminary, as they streamed
    assert [(part["toolCallId"], part["errorText"]) for part in parts if part["type"] == "tool-output-error"] == [
        ("c1", "cancelled: cancelled by request"),
        ("c2", "cancelled: cancelled by request"),
    ]
    assert [part["delta"] for part in parts if part["type"] == "text-delta"] == ["Asking two."]
    assert parts[-1] == {"type": "abort", "reason": "cancelled by request"}
