"""Round trips joined across callers (shared/connections/round_trips.py), on a real redis-server,
and on a Redis Cluster: one connection per primary, a slot moved or migrating under the callers, a
primary's connection lost."""

import asyncio
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from tests.servers.redis_cluster import migrating, move_slot
from tests.support.round_trips import log_writes
from tokentail.redis_server import LocalCluster
from tokentail.shared.connections.round_trips import ClusterRoundTrips, RoundTrips, round_trips, slot_of
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


async def test_a_write_on_a_connection_closed_under_it_fails_its_round_trip_and_the_next_goes_on(
    redis: Redis, settings: Settings
) -> None:
    # A Redis that dies as the connection opens: the transport is closed before the first write, and no
    # `connection_lost` will come to fail what was sent (a cluster's failover left runs waiting for ever).
    p = settings.key_prefix
    trips = RoundTrips(redis)
    await redis.set(f"{p}:z", "here")
    await trips(("PING",))
    link = trips._link
    assert link is not None

    def closed(data: bytes, owed: int) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

    link.send = closed  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(trips(("GET", f"{p}:z")), 10)
    assert await trips(("GET", f"{p}:z")) == [b"here"]  # on a new connection


async def test_a_round_trip_redis_leaves_unanswered_past_the_socket_timeout_fails(settings: Settings) -> None:
    slow = Redis.from_url(settings.redis_url, socket_timeout=0.2)
    trips = RoundTrips(slow)
    try:
        with pytest.raises(TimeoutError):
            await trips(("BLPOP", f"{settings.key_prefix}:never", 0))
        assert await trips(("PING",)) == [b"PONG"]  # the next goes on a new connection
    finally:
        await slow.aclose()


# -- on a Redis Cluster ------------------------------------------------------------------------------


def _keys(settings: Settings, count: int, name: str = "k") -> list[str]:
    """`count` keys, each in a slot of its own (on every primary, but for a chance of 3 * (2/3)^count)."""
    return [f"{settings.key_prefix}:{{{name}{i}}}" for i in range(count)]


def _primary(cluster_redis: RedisCluster, key: str) -> str:
    return cluster_redis.nodes_manager.get_node_from_slot(slot_of(key)).name


async def test_on_a_cluster_each_primary_s_commands_go_in_one_write_and_each_caller_gets_its_own(
    cluster_redis: RedisCluster, cluster_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = round_trips(cluster_redis)
    assert isinstance(trips, ClusterRoundTrips) and round_trips(cluster_redis) is trips
    keys = _keys(cluster_settings, 30)
    await asyncio.gather(*(trips(("SET", key, i)) for i, key in enumerate(keys)))  # every primary's connection open
    primaries = {_primary(cluster_redis, key) for key in keys}
    assert len(primaries) == 3
    written = log_writes(monkeypatch)
    answers = await asyncio.gather(
        *(trips(("GET", key), ("INCR", key)) for key in keys),
        trips(*(("GET", key) for key in keys)),  # one caller's commands on every primary: its replies in order
    )
    assert answers[:-1] == [[str(i).encode(), i + 1] for i in range(30)]
    assert answers[-1] == [str(i + 1).encode() for i in range(30)]
    assert sorted(owed for _, owed in written) == sorted(
        3 * sum(_primary(cluster_redis, key) == primary for key in keys) for primary in primaries
    )  # one write per primary, of every caller's commands there


async def test_on_a_cluster_a_command_on_a_slot_moved_to_another_primary_follows_it(
    cluster_redis: RedisCluster, cluster_settings: Settings, cluster: LocalCluster
) -> None:
    trips = ClusterRoundTrips(cluster_redis)
    key = f"{cluster_settings.key_prefix}:{{moved}}"
    script = cluster_redis.register_script("return redis.call('GET', KEYS[1])")  # type: ignore[misc]
    await trips(("SET", key, "here"))
    before = trips.trips(slot_of(key)).name
    new_primary = move_slot(cluster, slot_of(key))
    assert new_primary != before
    # MOVED, then sent to the primary Redis named, whose script cache has not seen it (NOSCRIPT: EVAL)
    assert await asyncio.gather(trips(("GET", key)), trips.script(script, [key], [])) == [[b"here"], b"here"]
    assert trips.trips(slot_of(key)).name == new_primary  # the slot map patched: no MOVED again


async def test_on_a_cluster_a_command_on_a_key_migrating_away_follows_ask_and_tryagain(
    cluster_redis: RedisCluster, cluster_settings: Settings, cluster: LocalCluster
) -> None:
    trips = ClusterRoundTrips(cluster_redis)
    p = cluster_settings.key_prefix
    gone, staying, new = (f"{p}:{{asked}}:{name}" for name in ("gone", "staying", "new"))
    await trips(("SET", gone, "a"), ("SET", staying, "b"))
    slot = slot_of(gone)
    source = trips.trips(slot).name
    with migrating(cluster, slot) as migration:
        migration.migrate(gone)
        # ASK: the key moved already goes to the target (after ASKING); the other stays on the source.
        assert await trips(("GET", gone), ("GET", staying), ("SET", new, "c")) == [b"a", b"b", b"OK"]
        assert trips.trips(slot).name == source  # ASK moves no slot
        # A command of keys the migration split is answered TRYAGAIN: sent again until they are together.
        split = asyncio.ensure_future(trips(("MGET", gone, staying)))
        await asyncio.sleep(3 * trips.TRY_AGAIN_SECONDS)
        assert not split.done()
        migration.migrate(staying)
        assert await split == [[b"a", b"b"]]
    assert await trips(("MGET", gone, staying, new)) == [[b"a", b"b", b"c"]]
    assert trips.trips(slot).name == migration.address


async def test_on_a_cluster_a_primary_s_connection_lost_fails_its_own_commands_alone(
    cluster_redis: RedisCluster, cluster_settings: Settings, cluster: LocalCluster
) -> None:
    trips = ClusterRoundTrips(cluster_redis)
    await cluster_redis.initialize()  # its slot map
    keys = _keys(cluster_settings, 30, "lost")
    here, there = keys[0], next(key for key in keys if _primary(cluster_redis, key) != _primary(cluster_redis, keys[0]))
    await trips(("SET", here, "1"), ("SET", there, "2"))
    (own_id,), (other_id,) = await asyncio.gather(
        trips.submit([("CLIENT", "ID")], [slot_of(here)]), trips.submit([("CLIENT", "ID")], [slot_of(there)])
    )
    nodes = dict(cluster_redis.nodes_manager.nodes_cache)
    blocked = asyncio.ensure_future(trips(("BLPOP", f"{here}:never", 0)))  # out on its primary until cut
    await asyncio.sleep(0.05)
    port = int(_primary(cluster_redis, here).rsplit(":", 1)[1])
    with sync_redis.Redis(port=port) as node:
        node.client_kill_filter(_id=own_id)
    with pytest.raises(ConnectionError):
        await blocked
    assert await trips(("GET", there), ("GET", here)) == [b"2", b"1"]  # its primary's on a new connection
    # The slot map was read again meanwhile (redis-py's nodes made anew, the old ones closed): the
    # other primary's round trips kept their connection.
    await asyncio.sleep(trips.READ_MAP_SECONDS)
    assert all(node is not nodes[name] for name, node in cluster_redis.nodes_manager.nodes_cache.items())
    assert await trips.submit([("CLIENT", "ID")], [slot_of(there)]) == [other_id]
