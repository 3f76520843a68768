"""Compacted catch-up (`?catch_up=snapshot`) through uvicorn: SSE, NDJSON, the WebSocket and the
Python client get a long session as snapshots that keep the same text in far fewer events, and
resume from a snapshot's id exactly."""

import json
from typing import Any

import httpx2
import websockets

from tests.clients.sse_client import read_events
from tests.fixtures.stack import Gateway
from tests.support.sessions import completion, delta_of, write_turns
from tests.support.writes import AllWrites
from tokentail import AsyncTokentail
from tokentail.shared.vocabulary.run_log import RunLog


def kept_texts(events: list[tuple[int, str, Any]]) -> dict[str, str]:
    """Each run's text as a client keeps it, from (id, event, data) in the order received."""
    logged = [(seq, event, json.dumps(data)) for seq, event, data in events]
    run_ids = {data["run_id"] for _, _, data in events}
    return {run_id: RunLog.of(run_id, logged).text for run_id in run_ids}


def expanded(received: list[tuple[int | None, str, dict[str, Any]]]) -> list[tuple[int, str, Any]]:
    """Snapshot frames opened into the events they hold."""
    out: list[tuple[int, str, Any]] = []
    for event_id, event, data in received:
        assert event_id is not None
        if event == "snapshot":
            out += [(inner["id"], inner["event"], inner["data"]) for inner in data["events"]]
        else:
            out.append((event_id, event, data))
    return out


async def test_a_finished_session_reopens_as_snapshots_with_the_same_text(
    gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites
) -> None:
    session_id, _ = await write_turns(runs, turns=40, deltas=50)
    url = f"/v1/sessions/{session_id}/events"
    everything = await read_events(client, url)
    compacted = await read_events(client, url + "?catch_up=snapshot")
    assert {event for _, event, _ in compacted.events} == {"snapshot"}
    assert compacted.ids[-1] == everything.ids[-1]
    opened = expanded(compacted.events)
    assert kept_texts(opened) == kept_texts([(i, e, d) for i, e, d in everything.events if i is not None])
    assert len(opened) == 40 * 4  # queued, started, one delta, completed
    # Far behind mid-session: a snapshot of what follows, which the client adds to what it holds.
    held = [(i, e, d) for i, e, d in everything.events if i is not None and i <= 1000]
    rest = await read_events(client, url + "?catch_up=snapshot", last_event_id=1000)
    assert rest.of("snapshot") and expanded(rest.events)[0][0] > 1000 and rest.ids[-1] == everything.ids[-1]
    assert kept_texts(held + expanded(rest.events)) == kept_texts(opened)
    # Resuming from the snapshot's id is exact: nothing is left after the last.
    assert (await read_events(client, url, last_event_id=compacted.ids[-1])).status == 204
    # A client a few events behind gets them as they are.
    near = await read_events(client, url + "?catch_up=snapshot", last_event_id=everything.ids[-1] - 5)
    assert near.ids == everything.ids[-5:]


async def test_a_run_still_streaming_comes_after_the_snapshot_delta_by_delta(
    gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites
) -> None:
    session_id, lease = await write_turns(runs, turns=5, deltas=100, last_ends=False)
    async with AsyncTokentail(gateway.url) as tokentail:
        events = []
        async for event in tokentail.stream(session_id):  # catch_up="snapshot" is the client's default
            events.append(event)
            if len(events) == 1 + 4 * 4 + 100:  # the 4 finished runs compacted; the fifth's start and deltas
                await lease.append([delta_of(lease.run_id, "live")], ending=completion(lease.run_id, "done"))
        everything = [event async for event in tokentail.stream(session_id, catch_up="events")]
    assert [e.id for e in events][-103:] == [e.id for e in everything][-103:]  # run 5 as it is, then live
    assert len(events) < len(everything) / 3
    assert kept_texts([(e.id or 0, e.event, e.data) for e in events]) == kept_texts(
        [(e.id or 0, e.event, e.data) for e in everything]
    )


async def test_ndjson_and_the_websocket_send_the_same_snapshot(
    gateway: Gateway, client: httpx2.AsyncClient, runs: AllWrites
) -> None:
    session_id, _ = await write_turns(runs, turns=3, deltas=20)
    sse = await read_events(client, f"/v1/sessions/{session_id}/events?catch_up=snapshot")
    ndjson = await client.get(
        f"/v1/sessions/{session_id}/events?catch_up=snapshot", headers={"Accept": "application/x-ndjson"}
    )
    lines = [json.loads(line) for line in ndjson.text.splitlines() if line]
    assert [(line["id"], line["event"], line["data"]) for line in lines] == sse.events
    url = f"ws://127.0.0.1:{gateway.port}/v1/sessions/{session_id}/ws?catch_up=snapshot"
    async with websockets.connect(url) as ws:
        message = json.loads(await ws.recv())
        assert (message["id"], message["event"], message["data"]) == sse.events[0]
        await ws.send(json.dumps({"type": "resume", "last_event_id": 0, "catch_up": "fast"}))
        assert json.loads(await ws.recv())["error"]["type"] == "validation_error"
    refused = await client.get(f"/v1/sessions/{session_id}/events?catch_up=fast")
    assert refused.status_code == 422 and refused.json()["error"]["type"] == "validation_error"
