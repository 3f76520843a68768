"""EventFeed against a real Redis, driven step by step."""

import asyncio
import json

import pytest
from redis.asyncio import Redis

from tests.support.round_trips import log_writes
from tests.support.sessions import held, start_a_run
from tests.support.writes import AllWrites
from tokentail.gateway.encodings.sse import encode_events, encode_gap
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.feed import READ_BUDGET_BYTES, EventFeed, Start
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.events import MessageDelta, RunCompleted
from tokentail.worker.writes.writer import MAX_DELTA_CHARS


async def test_a_reader_overtaken_by_trimming_gets_a_gap_frame_not_a_silent_skip(
    redis: Redis, settings: Settings
) -> None:
    runs = AllWrites(redis, settings.model_copy(update={"stream_maxlen": 100}))
    session_id, run = await start_a_run(runs)
    delta = json.dumps({"run_id": run.run_id, "text": "x"})
    await (await held(runs, session_id, run.run_id, "lease-1")).append([("message.delta", delta)] * 20)
    hub = StreamHub(settings.model_copy(update={"stream_maxlen": 100, "sse_heartbeat_seconds": 1.0}), 2)
    await hub.start()
    feed = EventFeed(hub, session_id, Start(0, None, False), batch=10, until_idle=True, transport="sse").__aiter__()
    try:
        first = await anext(feed)
        assert [e.seq for e in first.events] == list(range(1, 11)) and first.gap is None
        for _ in range(10):  # the writer races ahead; the stream is trimmed under the reader
            await (await held(runs, session_id, run.run_id, "lease-1")).append([("message.delta", delta)] * 50)
        seen = first.events[-1].seq
        while (following := await anext(feed)).gap is None:  # what was read ahead of the trimming
            assert following.events[0].seq == seen + 1
            seen = following.events[-1].seq
        assert following.gap.reason == "trimmed"
        assert following.gap.first_available > seen + 1 and following.events[0].seq == following.gap.first_available
        frames = encode_gap(following.gap) + encode_events(following.events)
        assert frames.startswith(b'event: gap\ndata: {"reason":"trimmed","first_available":')
    finally:
        await feed.aclose()
        await hub.aclose()


async def test_a_reader_holds_a_bounded_part_of_a_session_however_large(redis: Redis, settings: Settings) -> None:
    runs = AllWrites(redis, settings)
    session_id, run = await start_a_run(runs)
    delta = MessageDelta(run_id=run.run_id, text="é" * MAX_DELTA_CHARS).model_dump_json()  # the largest delta
    for _ in range(10):
        await (await held(runs, session_id, run.run_id, "lease-1")).append(
            [("message.delta", delta)] * 30
        )  # 10 MB in all
    await (await held(runs, session_id, run.run_id, "lease-1")).append(
        [], ending=RunCompleted(run_id=run.run_id, output="", usage={})
    )
    hub = StreamHub(settings, 2)
    await hub.start()
    feed = EventFeed(hub, session_id, Start(0, None, False), batch=500, until_idle=True, transport="sse")
    sizes, seqs = [], []
    try:
        async for batch in feed:
            sizes.append(sum(len(event.data) for event in batch.events))
            seqs += [event.seq for event in batch.events]
    finally:
        await hub.aclose()
    assert seqs == list(range(1, 304))  # all of it, in order
    # Each read is sized by the events of the one before, so it may pass the budget a little; a read
    # of `batch` events would have held the whole 10 MB session at once.
    assert max(sizes) < 2 * READ_BUDGET_BYTES


async def test_a_stream_opened_on_a_running_run_still_ends_when_its_catch_up_brings_the_end(
    redis: Redis, settings: Settings
) -> None:
    # The start read saw the run going (so the feed skips asking Redis after its first catch-up), but
    # the run ended before that catch-up: its events are what says so, and the stream must end.
    runs = AllWrites(redis, settings)
    session_id, run = await start_a_run(runs)
    await (await held(runs, session_id, run.run_id, "lease-1")).append(
        [("message.delta", json.dumps({"run_id": run.run_id, "text": "x"}))],
        ending=RunCompleted(run_id=run.run_id, output="x", usage={}),
    )
    hub = StreamHub(settings.model_copy(update={"sse_heartbeat_seconds": 30.0}), 2)
    await hub.start()
    feed = EventFeed(hub, session_id, Start(0, None, False, active=True), batch=500, until_idle=True, transport="sse")
    try:
        async with asyncio.timeout(5):  # well before a heartbeat, whose check would end it too
            seqs = [event.seq async for batch in feed for event in batch.events]
    finally:
        await hub.aclose()
    assert seqs == [1, 2, 3, 4]


async def test_the_next_catch_up_read_is_on_its_way_before_a_batch_is_framed(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis reads the next page while the gateway frames and sends this one: its command is written
    # before the batch reaches its encoding, not after.
    runs = AllWrites(redis, settings)
    session_id, run = await start_a_run(runs)
    delta = json.dumps({"run_id": run.run_id, "text": "x"})
    await (await held(runs, session_id, run.run_id, "lease-1")).append(
        [("message.delta", delta)] * 45, ending=RunCompleted(run_id=run.run_id, output="x" * 45, usage={})
    )
    writes = log_writes(monkeypatch)
    hub = StreamHub(settings, 2)
    await hub.start()
    reads_out = []
    try:
        feed = EventFeed(hub, session_id, Start(0, None, False), batch=10, until_idle=True, transport="sse")
        async for batch in feed:
            if batch.chunks:
                reads_out.append(sum(data.count(b"XRANGE") for data, _ in writes))
    finally:
        await hub.aclose()
    # 48 events in reads of 10: on each batch but the first (it goes at once) and the last (a short
    # read: the end), the next read is out.
    assert reads_out == [1, 3, 4, 5, 5]
