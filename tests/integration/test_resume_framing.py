"""A resume's catch-up is framed from the stream's entries as Redis sent them (gateway/encodings/sse.py's
`frame_entries`, ndjson.py's `ndjson_entries`, websocket.py's `entry_messages`), with no event made of
each: through uvicorn, on a real Redis, its bytes are those of the general path, which frames the
events read and parsed, for a session of several runs with tools, agent data, reasoning, a question
answered, a takeover that goes on (`run.continued`), a failure and a cancel, in pages of several
sizes, resumed from every kind of place."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
import websockets
from redis.asyncio import Redis

from tests.fixtures.stack import Gateway
from tests.support.sessions import make_run, make_session
from tests.support.waiting import scaled
from tests.support.writes import AllWrites
from tokentail.gateway.encodings import ndjson, sse, websocket
from tokentail.gateway.live.chunk import Chunk
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore, StoredEvent
from tokentail.shared.store.scripts.runs import Asked
from tokentail.shared.vocabulary.events import (
    CustomData,
    ErrorInfo,
    Gap,
    MessageDelta,
    ReasoningDelta,
    RunCancelled,
    RunCompleted,
    RunFailed,
    Status,
    ToolCompleted,
    ToolFailed,
    ToolStarted,
)
from tokentail.shared.vocabulary.records import Question
from tokentail.worker.writes.run_writes import RunLease

SSE, NDJSON = "text/event-stream", "application/x-ndjson"


def _text(run_id: str, text: str) -> tuple[str, str]:
    return "message.delta", MessageDelta(run_id=run_id, text=text).model_dump_json()


async def _started(runs: AllWrites, session_id: str, run_id: str, token: str, takeover: Any = "restart") -> RunLease:
    started = await runs.start_run(session_id, run_id, f"job-{token}", token=token, takeover=takeover)
    assert started is not None
    return started.lease


async def _session(runs: AllWrites, redis: Redis, settings: Settings) -> str:
    """A session as workers write one: every kind of event, runs that end every way, some deltas as
    large as a page's budget allows (so that reads are of several sizes), some text not in ASCII."""
    session = make_session()
    sid = session.session_id

    # 1: reasoning, a tool that runs, agent data and status, text; completed (its output kept apart).
    first = make_run("first")
    await runs.queue_run(sid, first, create=session)
    lease = await _started(runs, sid, first.run_id, "lease-1")
    rid = first.run_id
    await lease.append(
        [
            ("reasoning.delta", ReasoningDelta(run_id=rid, text="Thinking it over. ").model_dump_json()),
            ("status", Status(run_id=rid, text="Looking it up", agent="researcher").model_dump_json()),
            (
                "tool.started",
                ToolStarted(run_id=rid, call_id="call_1", name="lookup", arguments={"q": "ünïcode"}).model_dump_json(),
            ),
            (
                "tool.completed",
                ToolCompleted(run_id=rid, call_id="call_1", result={"found": 3}, duration_ms=7).model_dump_json(),
            ),
            ("data.chart", CustomData(run_id=rid, name="chart", data={"points": [1, 2, 3]}).model_dump_json()),
        ]
    )
    words = [f"w{i} — é " for i in range(700)]
    for start in range(0, len(words), 100):
        await lease.append([_text(rid, word) for word in words[start : start + 100]])
    await lease.append([_text(rid, "x" * 60_000) for _ in range(3)])  # large: the next reads are short
    output = "".join(words) + "x" * 180_000
    await lease.append([], ending=RunCompleted(run_id=rid, output=output, usage={"output_tokens": 703}))

    # 2: a tool call a person approves: the question, its answer, the run going on after it.
    second = make_run("second")
    await runs.queue_run(sid, second)
    lease = await _started(runs, sid, second.run_id, "lease-2")
    rid = second.run_id
    await lease.append([_text(rid, "Before the question. ")])
    call = ToolStarted(run_id=rid, call_id="call_2", name="delete_files", arguments={"count": 3})
    await lease.append([("tool.started", call.model_dump_json())])
    question = Question(input_id="in_1", kind="approval", prompt="Delete 3 files?", answer_schema={})
    assert await lease.ask([question], [question]) is Asked.WAITING
    waiting = await SessionStore(redis, settings).get_run(sid, rid)
    assert waiting is not None
    await runs.answer(sid, waiting, "in_1", {"approved": True})
    lease = await _started(runs, sid, rid, "lease-2b")  # `run.started`, reason `resume`
    await lease.append(
        [
            (
                "tool.completed",
                ToolCompleted(run_id=rid, call_id="call_2", result="deleted", duration_ms=1).model_dump_json(),
            )
        ]
        + [_text(rid, f"after {i} ") for i in range(50)]
    )
    await lease.append([], ending=RunCompleted(run_id=rid, output="Before the question. done", usage={}))

    # 3: its worker hands it over past 5 ids Redis lost (a hole: worker/writes/lost_writes.py); the
    # next attempt goes on from its record, dropping what came after it (`run.continued`).
    third = make_run("third")
    await runs.queue_run(sid, third)
    lease = await _started(runs, sid, third.run_id, "lease-3")
    rid = third.run_id
    kept = await lease.append([_text(rid, f"kept {i} ") for i in range(40)])
    dropped = await lease.append([_text(rid, f"dropped {i} ") for i in range(10)])
    await lease.hand_over(past_seq=dropped + 5)
    lease = await _started(runs, sid, rid, "lease-3b", takeover=kept)
    await lease.append([_text(rid, f"again {i} ") for i in range(30)])
    await lease.append([], ending=RunCompleted(run_id=rid, output="kept and again", usage={}))

    # 4: a tool that fails, then the run fails; 5: a run cancelled mid-text.
    fourth = make_run("fourth")
    await runs.queue_run(sid, fourth)
    lease = await _started(runs, sid, fourth.run_id, "lease-4")
    rid = fourth.run_id
    await lease.append(
        [
            ("tool.started", ToolStarted(run_id=rid, call_id="call_3", name="fetch", arguments={}).model_dump_json()),
            (
                "tool.failed",
                ToolFailed(run_id=rid, call_id="call_3", error="timed out", duration_ms=30_000).model_dump_json(),
            ),
        ]
    )
    await lease.append([], ending=RunFailed(run_id=rid, error=ErrorInfo(type="provider_error", message="down")))
    fifth = make_run("fifth")
    await runs.queue_run(sid, fifth)
    lease = await _started(runs, sid, fifth.run_id, "lease-5")
    await lease.append([_text(fifth.run_id, f"t{i} ") for i in range(20)])
    await lease.append([], ending=RunCancelled(run_id=fifth.run_id, reason="cancelled by request"))
    kinds = {event.type for event in await SessionStore(redis, settings).read(sid, 0, 10_000)}
    assert {b"run.continued", b"input.required", b"input.received", b"run.failed", b"run.cancelled"} <= kinds
    return sid


@pytest.fixture
async def session_id(redis: Redis, settings: Settings) -> str:
    return await _session(AllWrites(redis, settings), redis, settings)


async def _body(client: httpx2.AsyncClient, url: str, accept: str, after: int | None) -> bytes:
    headers = {"Accept": accept, **({"Last-Event-ID": str(after)} if after is not None else {})}
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        return b"".join([part async for part in response.aiter_bytes()])


@pytest.fixture
def general_path(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    """Switches the framing from entries off: each chunk is framed of the events parsed from them."""

    def off() -> None:
        monkeypatch.setattr(sse, "frame_entries", None)
        monkeypatch.setattr(ndjson, "ndjson_entries", None)
        monkeypatch.setattr(websocket, "entry_messages", None)

    return off


def _counted(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """Counts the calls of `module.name` from now on, in the list's one item."""
    calls, framer = [0], getattr(module, name)

    def counted(entries: list[Any]) -> Any:
        calls[0] += 1
        return framer(entries)

    monkeypatch.setattr(module, name, counted)
    return calls


def _shown_after(events: list[StoredEvent], place: int) -> tuple[list[StoredEvent], Gap | None]:
    """What a resume after `place` shows: the events past it, and, resumed inside the hole, a gap
    first (the next read starts past it: feed.py's `_deliver`)."""
    shown = [event for event in events if event.seq > place]
    return shown, Gap(reason="trimmed", first_available=shown[0].seq) if shown[0].seq > place + 1 else None


@pytest.fixture
async def client(start_gateway: Callable[..., Any]) -> AsyncIterator[httpx2.AsyncClient]:
    # No heartbeat in a body however slow the box: each is compared byte for byte.
    gateway: Gateway = await start_gateway(sse_heartbeat_seconds=60.0)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(30.0)) as client:
        yield client


async def test_a_resume_framed_from_entries_is_byte_for_byte_the_general_path(
    client: httpx2.AsyncClient,
    session_id: str,
    store: SessionStore,
    settings: Settings,
    general_path: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"/v1/sessions/{session_id}/events"
    events = await store.read(session_id, 0, 10_000)
    last = events[-1].seq
    ids = [event.seq for event in events]
    assert ids[-1] - ids[0] + 1 == len(ids) + 5  # the hole the hand-over left
    continued = next(event.seq for event in events if event.type == b"run.continued")
    asked = next(event.seq for event in events if event.type == b"input.required")
    # From the start, from the middle of a run, just before a question, the takeover and the end,
    # from inside the hole the hand-over left, and from the last id but one.
    places = [None, 0, 350, asked - 1, continued - 1, continued - 3, ids[len(ids) // 2], last - 1]
    assert any(p is not None and p not in ids for p in places)  # one inside the hole

    fast_calls = _counted(monkeypatch, sse, "frame_entries")
    fast = {(accept, p): await _body(client, url, accept, p) for accept in (SSE, NDJSON) for p in places}
    assert fast_calls[0] >= len(places)  # the SSE reads were framed from their entries
    general_path()
    general = {(accept, p): await _body(client, url, accept, p) for accept in (SSE, NDJSON) for p in places}
    for key, body in fast.items():
        assert body == general[key], key
    # And both are the events as the store reads them, framed as the live path frames them.
    retry = b"retry: %d\n\n" % settings.sse_retry_ms
    for place in places:
        shown, gap = _shown_after(events, place or 0)
        sse_gap, ndjson_gap = (sse.encode_gap(gap), ndjson.ndjson_gap(gap)) if gap is not None else (b"", b"")
        assert fast[(SSE, place)] == retry + sse_gap + sse.encode_events(shown), place
        assert fast[(NDJSON, place)] == ndjson_gap + ndjson.ndjson_events(shown), place


async def test_a_chunk_of_entries_makes_its_events_only_for_a_reader_that_asks(
    store: SessionStore, session_id: str
) -> None:
    entries = await store.read_entries(session_id, 0, 500)
    chunk = Chunk.of_entries(entries, size=0, terminal=False)
    assert chunk._events is None
    assert chunk.encoded(sse.encode_events, sse.frame_entries) == sse.encode_events(
        await store.read(session_id, 0, 500)
    )
    assert chunk._events is None  # framed from the entries
    assert chunk.events == await store.read(session_id, 0, 500)  # made for a renderer, as read


async def test_a_socket_s_resume_framed_from_entries_is_the_general_path_s_messages(
    start_gateway: Callable[..., Any],
    session_id: str,
    store: SessionStore,
    general_path: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway: Gateway = await start_gateway()
    events = await store.read(session_id, 0, 10_000)
    last = events[-1].seq
    continued = next(event.seq for event in events if event.type == b"run.continued")
    places = [0, 350, continued - 3, last - 1]  # continued - 3: inside the hole the hand-over left

    async def messages(after: int) -> list[str]:
        url = f"ws://127.0.0.1:{gateway.port}/v1/sessions/{session_id}/ws?last_event_id={after}"
        received: list[str] = []
        async with websockets.connect(url, max_size=None) as ws, asyncio.timeout(scaled(30)):
            while not received or json.loads(received[-1]).get("id") != last:
                received.append(str(await ws.recv()))
        return received

    fast_calls = _counted(monkeypatch, websocket, "entry_messages")
    fast = {place: await messages(place) for place in places}
    assert fast_calls[0] >= len(places)
    general_path()
    for place in places:
        assert await messages(place) == fast[place], place
        shown, gap = _shown_after(events, place)
        expected = ([websocket.gap_message(gap)] if gap is not None else []) + websocket.event_messages(shown)
        assert fast[place] == expected, place
