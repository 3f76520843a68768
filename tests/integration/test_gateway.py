"""The HTTP API and SSE end to end in one process: uvicorn on loopback, a real worker, real Redis."""

import asyncio
import json
import time
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis

from tests.clients.sse_client import Received, read_events
from tests.support.gates import Gates
from tests.support.sessions import held
from tests.support.waiting import eventually, scaled
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.events import RunCompleted
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord
from tokentail.worker.process.main import TokentailWorker
from tokentail.worker.providers.scripted import scripted_tokens

FAST = {"tokens": 60, "tokens_per_second": 0}


async def _create(client: httpx2.AsyncClient, text: str = "hello", **params: Any) -> dict[str, Any]:
    response = await client.post("/v1/sessions", json={"input": text, "model": "scripted", "params": params or FAST})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every gateway and worker here knows the agent `held`, which waits at its gate (tests/support/gates.py)."""
    return settings.model_copy(update={"agents": {"held": "tests.support.gates:held"}})


async def _create_held(client: httpx2.AsyncClient) -> dict[str, Any]:
    """A session whose run streams a little, then waits at its gate until the test releases it."""
    response = await client.post("/v1/sessions", json={"input": "hello", "agent": "held"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _assert_complete(received: Received, first_id: int = 1) -> None:
    """Ids contiguous from `first_id`, ending with run.completed whose output is the joined deltas."""
    assert received.ids == list(range(first_id, first_id + len(received.ids)))
    assert received.events[-1][1] == "run.completed"
    run_id = received.events[-1][2]["run_id"]
    deltas = "".join(d["text"] for d in received.of("message.delta") if d["run_id"] == run_id)
    assert deltas == received.events[-1][2]["output"]


async def test_a_run_streams_from_queued_to_completed(client: httpx2.AsyncClient, worker: TokentailWorker) -> None:
    created = await _create(client)
    assert set(created) == {
        "session_id",
        "run_id",
        "events_url",
        "stream_token",
        "stream_token_expires_at",
        "stream_token_scope",
    }
    assert created["events_url"].endswith(f"/v1/sessions/{created['session_id']}/events")
    received = await read_events(client, created["events_url"])
    assert received.status == 200 and received.retry == 1000
    assert [kind for _, kind, _ in received.events[:2]] == ["run.queued", "run.started"]
    assert received.events[1][2] == {"run_id": created["run_id"], "attempt": 1, "reason": "start"}
    _assert_complete(received)
    output_tokens = len(scripted_tokens("hello", 60))  # 60 asked for, to the end of that sentence
    assert received.events[-1][2]["usage"] == {"input_tokens": 1, "output_tokens": output_tokens}


async def test_resume_from_header_or_query_continues_after_the_id_and_204_at_the_end(
    client: httpx2.AsyncClient, worker: TokentailWorker
) -> None:
    created = await _create(client)
    full = await read_events(client, created["events_url"])
    last = full.ids[-1]
    for via in ("header", "query"):
        resumed = await read_events(client, created["events_url"], last_event_id=3, via=via)
        assert resumed.ids == list(range(4, last + 1))
        assert resumed.events == full.events[3:]
    done = await read_events(client, created["events_url"], last_event_id=last)
    assert done.status == 204


async def test_the_query_parameter_wins_over_the_header(client: httpx2.AsyncClient, worker: TokentailWorker) -> None:
    created = await _create(client)
    await read_events(client, created["events_url"])
    response = await client.get(
        created["events_url"], params={"last_event_id": "2"}, headers={"Last-Event-ID": "not-a-number"}
    )
    assert response.status_code == 200
    assert response.text.startswith("retry: 1000\n\nid: 3\n")


async def test_a_follow_up_run_appends_to_the_same_stream(client: httpx2.AsyncClient, worker: TokentailWorker) -> None:
    created = await _create(client)
    first = await read_events(client, created["events_url"])
    response = await client.post(f"/v1/sessions/{created['session_id']}/runs", json={"input": "and more"})
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    second = await read_events(client, created["events_url"], last_event_id=first.ids[-1])
    assert second.events[0][1:] == ("run.queued", {"run_id": run_id, "input": "and more"})
    _assert_complete(second, first_id=first.ids[-1] + 1)
    state = (await client.get(f"/v1/sessions/{created['session_id']}")).json()
    assert state["status"] == "idle" and state["last_event_id"] == second.ids[-1]
    assert [(t["role"], t["content"]) for t in state["transcript"]] == [
        ("user", "hello"),
        ("assistant", first.events[-1][2]["output"]),
        ("user", "and more"),
        ("assistant", second.events[-1][2]["output"]),
    ]


async def test_a_follow_up_while_a_run_is_active_is_rejected(client: httpx2.AsyncClient) -> None:
    created = await _create(client)  # no worker: the run stays queued
    response = await client.post(f"/v1/sessions/{created['session_id']}/runs", json={"input": "again"})
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "run_conflict"
    state = (await client.get(f"/v1/sessions/{created['session_id']}")).json()
    assert state["status"] == "queued" and state["active_run_id"] == created["run_id"]


async def test_a_request_sent_again_with_its_idempotency_key_makes_nothing_twice(
    client: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    key = {"Idempotency-Key": "0b6f2c4e-retry-me"}
    first = await client.post("/v1/sessions", json={"input": "hi"}, headers=key)
    again = await client.post("/v1/sessions", json={"input": "hi"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert {k: again.json()[k] for k in ("session_id", "run_id")} == {
        k: first.json()[k] for k in ("session_id", "run_id")
    }
    session_id = first.json()["session_id"]
    runs_url = f"/v1/sessions/{session_id}/runs"
    follow_up = {"input": "more", "multitask": "enqueue"}
    queued = [await client.post(runs_url, json=follow_up, headers={"Idempotency-Key": "k2"}) for _ in range(2)]
    assert [response.status_code for response in queued] == [202, 202]
    assert queued[0].json()["run_id"] == queued[1].json()["run_id"]
    # Run while the first is active, the same key would have been refused (`reject`) if it were new.
    assert (await client.post(runs_url, json={"input": "more"}, headers={"Idempotency-Key": "k2"})).status_code == 202
    state = (await client.get(f"/v1/sessions/{session_id}")).json()
    assert [run["run_id"] for run in state["runs"]] == [first.json()["run_id"], queued[0].json()["run_id"]]
    events = await redis.xrange(Keys(settings.key_prefix).session(session_id).events)
    assert [fields[b"type"] for _, fields in events] == [b"run.queued", b"run.queued"]  # one each
    # Another key is another session; a key that is not printable ASCII is refused.
    other = await client.post("/v1/sessions", json={"input": "hi"}, headers={"Idempotency-Key": "another"})
    assert other.json()["session_id"] != session_id
    bad = await client.post("/v1/sessions", json={"input": "hi"}, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 422


@pytest.mark.usefixtures("gates")
async def test_the_session_shows_partial_text_while_running(
    client: httpx2.AsyncClient, worker: TokentailWorker
) -> None:
    created = await _create_held(client)
    await read_events(client, created["events_url"], limit=3)  # queued, started, a delta: then it waits
    state = (await client.get(f"/v1/sessions/{created['session_id']}")).json()
    assert state["status"] == "running"
    partial = state["transcript"][-1]
    assert partial["role"] == "assistant" and partial["status"] == "running" and partial["content"]


async def test_a_session_without_input_has_nothing_to_stream(client: httpx2.AsyncClient) -> None:
    response = await client.post("/v1/sessions", json={"metadata": {"user": "u1"}})
    assert response.status_code == 201 and response.json()["run_id"] is None
    received = await read_events(client, response.json()["events_url"])
    assert received.status == 204
    # An id ahead of an empty, idle stream: a lone gap frame would make EventSource retry for ever.
    assert (await read_events(client, response.json()["events_url"], last_event_id=5)).status == 204
    state = (await client.get(f"/v1/sessions/{response.json()['session_id']}")).json()
    assert state["metadata"] == {"user": "u1"} and state["runs"] == [] and state["status"] == "idle"


async def test_a_failing_run_ends_with_run_failed(client: httpx2.AsyncClient, worker: TokentailWorker) -> None:
    created = await _create(client, tokens=50, tokens_per_second=0, fail_at_token=10)
    received = await read_events(client, created["events_url"])
    assert received.events[-1][1] == "run.failed"
    error = received.events[-1][2]["error"]
    # An unexpected exception's text stays in the worker's log: the client learns only its class.
    assert error["type"] == "internal_error" and "fail_at_token" not in error["message"]
    assert "ScriptedFailure" in error["message"]
    assert received.ids == list(range(1, len(received.ids) + 1))


async def test_a_run_recorded_with_invalid_params_ends_with_a_clear_error(
    client: httpx2.AsyncClient, worker: TokentailWorker, store: SessionStore, runs: AllWrites
) -> None:
    # The gateway refuses such params (422); a run recorded by an older version may still hold them.
    session = SessionRecord(session_id=new_session_id(), created_at=time.time(), model="scripted")
    run = RunRecord(run_id=new_run_id(), input="hi", model="scripted", params={"tokens": "many"})
    await runs.queue_run(session.session_id, run, create=session)
    received = await read_events(client, f"/v1/sessions/{session.session_id}/events")
    assert received.events[-1][1] == "run.failed"
    assert received.events[-1][2]["error"]["type"] == "invalid_request"
    assert "tokens" in received.events[-1][2]["error"]["message"]


async def test_trimmed_history_is_announced_with_a_gap_frame(
    client: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    runs = AllWrites(redis, settings.model_copy(update={"stream_maxlen": 100}))
    created = await _create(client)  # no worker: this test writes the run itself, 500 deltas
    assert await runs.start_run(created["session_id"], created["run_id"], created["run_id"], token="lease")
    delta = json.dumps({"run_id": created["run_id"], "text": "x"})
    for _ in range(10):
        await (await held(runs, created["session_id"], created["run_id"], "lease")).append(
            [("message.delta", delta)] * 50
        )
    done = RunCompleted(run_id=created["run_id"], output="x" * 500, usage={})
    last = await (await held(runs, created["session_id"], created["run_id"], "lease")).append([], ending=done)
    received = await read_events(client, created["events_url"], last_event_id=1)
    assert received.events[0][1] == "gap"
    gap = received.events[0][2]
    assert gap["reason"] == "trimmed" and gap["first_available"] > 2
    assert received.ids == list(range(gap["first_available"], last + 1))


async def test_an_id_ahead_of_the_stream_is_an_unknown_id_gap(
    client: httpx2.AsyncClient, worker: TokentailWorker
) -> None:
    created = await _create(client)
    full = await read_events(client, created["events_url"])
    received = await read_events(client, created["events_url"], last_event_id=10_000)
    assert received.events[0][1:] == ("gap", {"reason": "unknown_id", "first_available": 1})
    assert received.events[1:] == full.events


async def test_idle_streams_get_heartbeat_comments(
    client: httpx2.AsyncClient, worker: TokentailWorker, gates: Gates
) -> None:
    # The run waits at its gate until a ping came (the heartbeat is 1 s in tests), then ends.
    created = await _create_held(client)
    async with client.stream("GET", created["events_url"]) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"].startswith("no-cache")
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if b"\n: ping\n\n" in body or body.startswith(b": ping"):
                gates.release(created["run_id"])
    assert b"\n: ping\n\n" in body or body.startswith(b": ping")
    assert body.rstrip().split(b"\n\n")[-1].startswith(b"id:")  # the stream still ends with the last event


async def test_deleting_a_session_stops_its_run_and_its_streams(
    client: httpx2.AsyncClient, worker: TokentailWorker
) -> None:
    created = await _create(client, tokens=10_000, tokens_per_second=100)
    url = created["events_url"]
    reader = asyncio.create_task(read_events(client, url))
    await read_events(client, url, limit=4)
    assert (await client.delete(f"/v1/sessions/{created['session_id']}")).status_code == 204
    received = await asyncio.wait_for(reader, scaled(10))  # the open stream ends too
    assert received.events[-1][1] != "run.completed"
    # The worker stops the run: its next append is fenced.
    await eventually(lambda: all(task.done() for task in worker.tasks.values()), within=5)
    assert (await client.get(url)).status_code == 410
    assert (await client.get(f"/v1/sessions/{created['session_id']}")).status_code == 410


async def test_a_stopping_gateway_ends_streams_cleanly_and_another_resumes_them(
    start_gateway: Any, worker: TokentailWorker, gates: Gates
) -> None:
    first, second = await start_gateway(), await start_gateway()
    async with httpx2.AsyncClient(base_url=first.url) as client_a, httpx2.AsyncClient(base_url=second.url) as client_b:
        created = await _create_held(client_a)
        path = f"/v1/sessions/{created['session_id']}/events"
        reader = asyncio.create_task(read_events(client_a, path))
        await read_events(client_a, path, limit=3)  # queued, started, a delta: then the run waits at its gate
        await first.stop()
        partial = await asyncio.wait_for(reader, scaled(10))  # a clean end, not an error
        assert partial.events and partial.events[-1][1] != "run.completed"
        state = (await client_b.get(f"/v1/sessions/{created['session_id']}")).json()
        assert state["status"] == "running"  # mid-answer: the run waits at its gate
        gates.release(created["run_id"])
        rest = await read_events(client_b, path, last_event_id=partial.ids[-1])
        _assert_complete(Received(200, partial.events + rest.events))


async def test_a_finished_session_expires_after_its_ttl_and_answers_410(start_gateway: Any, start_worker: Any) -> None:
    gateway = await start_gateway()
    await start_worker(session_ttl_seconds=1)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        created = await _create(client, tokens=3, tokens_per_second=0)
        await read_events(client, created["events_url"])
        url = f"/v1/sessions/{created['session_id']}"
        # Still there, or already gone: a busy machine may take the second of its TTL to get here.
        assert (await client.get(url)).status_code in (200, 410)

        async def expired() -> None:
            assert (await client.get(url)).status_code == 410

        await eventually(expired, within=5, interval=0.1)
        assert (await client.get(created["events_url"])).status_code == 410
