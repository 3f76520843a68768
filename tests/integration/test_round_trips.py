"""Round trips joined across callers (shared/connections/round_trips.py), on a real redis-server."""

import asyncio
from typing import Any

import hiredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tokentail.shared.connections.round_trips import RoundTrips, round_trips
from tokentail.shared.plumbing.settings import Settings


async def test_concurrent_callers_share_a_round_trip_and_each_gets_its_own_replies(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = settings.key_prefix
    trips = RoundTrips(redis)
    sizes: list[int] = []
    send = trips._round_trip

    async def counted(packed: list[bytes]) -> list[object]:
        sizes.append(len(packed))
        return await send(packed)

    monkeypatch.setattr(trips, "_round_trip", counted)
    await redis.set(f"{p}:a", "1")
    first = asyncio.ensure_future(trips(("GET", f"{p}:a")))
    await asyncio.sleep(0)
    answers = await asyncio.gather(
        first,
        *(trips(("SET", f"{p}:{i}", i), ("GET", f"{p}:{i}")) for i in range(5)),
        trips(("INCR", f"{p}:a"), ("EXISTS", f"{p}:none")),
    )
    assert answers == [[b"1"], *([b"OK", str(i).encode()] for i in range(5)), [2, 0]]
    assert sizes == [1, 12]  # the first alone, at once; the others together, in the next round trip


async def test_an_error_reply_fails_only_its_own_caller(redis: Redis, settings: Settings) -> None:
    p = settings.key_prefix
    trips = RoundTrips(redis)
    await redis.set(f"{p}:text", "not a number")
    wrong = trips(("INCR", f"{p}:text"))
    right = trips(("INCR", f"{p}:count"))
    results = await asyncio.gather(wrong, right, return_exceptions=True)
    assert isinstance(results[0], ResponseError) and results[1] == [1]
    assert [type(r) for r in await trips.submit([("INCR", f"{p}:text"), ("GET", f"{p}:count")])] == [
        ResponseError,
        bytes,
    ]


async def test_a_script_redis_forgot_is_loaded_again(redis: Redis, settings: Settings) -> None:
    p = settings.key_prefix
    trips = round_trips(redis)
    assert round_trips(redis) is trips  # one per client
    script = redis.register_script("return ARGV[1] .. redis.call('GET', KEYS[1])")
    await redis.set(f"{p}:s", "b")
    assert await trips.script(script, [f"{p}:s"], ["a"]) == b"ab"
    await redis.script_flush()
    assert await trips.script(script, [f"{p}:s"], ["c"]) == b"cb"


async def test_a_round_trip_cut_leaves_no_reply_owed_on_a_pooled_connection(redis: Redis, settings: Settings) -> None:
    p = settings.key_prefix
    trips = RoundTrips(redis)
    get: tuple[Any, ...] = ("GET", f"{p}:x")
    cut = asyncio.ensure_future(trips._round_trip([hiredis.pack_command(get)] * 100))
    await asyncio.sleep(0)
    cut.cancel()
    await asyncio.gather(cut, return_exceptions=True)
    await redis.set(f"{p}:y", "fresh")
    assert await trips(("GET", f"{p}:y")) == [b"fresh"]  # not a reply owed to the cut round trip
