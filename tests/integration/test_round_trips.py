"""Round trips joined across callers (shared/connections/round_trips.py), on a real redis-server."""

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from tokentail.shared.connections.round_trips import RoundTrips, round_trips
from tokentail.shared.plumbing.settings import Settings


async def test_concurrent_callers_share_a_round_trip_and_each_gets_its_own_replies(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = settings.key_prefix
    trips = RoundTrips(redis)
    await trips(("PING",))  # the connection open: what is measured below is round trips alone
    sizes: list[int] = []
    send = trips._send

    def counted() -> None:
        if trips._link is not None and not trips._out and trips._asked:  # it writes, now
            sizes.append(sum(len(packed) for _, packed in trips._asked))
        send()

    monkeypatch.setattr(trips, "_send", counted)
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


async def test_a_caller_that_stops_waiting_leaves_no_reply_owed_to_the_next(redis: Redis, settings: Settings) -> None:
    p = settings.key_prefix
    trips = RoundTrips(redis)
    get: tuple[Any, ...] = ("GET", f"{p}:x")
    await redis.set(f"{p}:y", "fresh")
    cut = asyncio.ensure_future(trips(*[get] * 100))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # its round trip written
    cut.cancel()
    await asyncio.gather(cut, return_exceptions=True)
    assert await trips(("GET", f"{p}:y")) == [b"fresh"]  # not a reply owed to the cancelled caller


async def test_a_connection_redis_closes_fails_its_round_trip_and_the_next_goes_on_a_new_one(
    redis: Redis, settings: Settings
) -> None:
    p = settings.key_prefix
    trips = RoundTrips(redis)
    await redis.set(f"{p}:z", "here")
    (own_id,) = await trips(("CLIENT", "ID"))
    killed = asyncio.ensure_future(trips(("BLPOP", f"{p}:never", 0)))  # out until Redis closes it
    await asyncio.sleep(0.05)
    await redis.client_kill_filter(_id=own_id)
    with pytest.raises(ConnectionError):
        await killed
    assert await trips(("GET", f"{p}:z")) == [b"here"]


async def test_a_round_trip_redis_leaves_unanswered_past_the_socket_timeout_fails(settings: Settings) -> None:
    slow = Redis.from_url(settings.redis_url, socket_timeout=0.2)
    trips = RoundTrips(slow)
    try:
        with pytest.raises(TimeoutError):
            await trips(("BLPOP", f"{settings.key_prefix}:never", 0))
        assert await trips(("PING",)) == [b"PONG"]  # the next goes on a new connection
    finally:
        await slow.aclose()
