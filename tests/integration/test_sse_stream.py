"""EventStream against a real Redis, driven step by step."""

import json
from typing import Any

from redis.asyncio import Redis

from gateway.shutdown import StreamShutdown
from gateway.sse import EventStream
from gateway.tail import StreamTail
from shared.settings import Settings
from shared.store import SessionStore
from tests.integration.test_store import _started


async def test_a_reader_overtaken_by_trimming_gets_a_gap_frame_not_a_silent_skip(
    redis: Redis, settings: Settings
) -> None:
    store = SessionStore(redis, settings.model_copy(update={"stream_maxlen": 100}))
    session_id, run = await _started(store)
    delta = json.dumps({"run_id": run.run_id, "text": "x"})
    await store.append(session_id, run.run_id, "lease-1", [("message.delta", delta)] * 20)
    tail = StreamTail(str(settings.redis_url), store.keys, 1.0)
    stream = EventStream(store, tail, StreamShutdown(), session_id, 0, None, retry_ms=1000, batch=10).__aiter__()
    try:
        assert await anext(stream) == b"retry: 1000\n\n"
        first = await anext(stream)  # ids 1..10
        assert first.startswith(b"id: 1\n") and b"id: 10\n" in first
        for _ in range(10):  # the writer races ahead; the stream is trimmed under the reader
            await store.append(session_id, run.run_id, "lease-1", [("message.delta", delta)] * 50)
        following: Any = await anext(stream)
        assert following.startswith(b'event: gap\ndata: {"reason":"trimmed","first_available":')
        first_available = json.loads(following.split(b"\n")[1][len(b"data: ") :])["first_available"]
        assert first_available > 11
        assert b"\n\nid: %d\n" % first_available in following
    finally:
        await stream.aclose()
        await tail.aclose()
