"""The Redis clients of both processes, for the topology the settings name.

The sessions' Redis (`redis_url`) is one server or, with `redis_cluster`, a Redis Cluster; the job
queue and the leases index live on `queue_redis_url` when it is set (arq is single-node), else on
the sessions' Redis too. Either URL may name a Sentinel setup (shared/plumbing/redis_urls.py): its client asks
the Sentinels for the primary, and asks again after a connection to it failed, so a failover is
an outage of a few seconds (retried as any, shared/connections/outage.py), not the end of the service.
"""

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.connection import HiredisRespSerializer

from tokentail.shared.plumbing.redis_urls import sentinel_setup
from tokentail.shared.plumbing.settings import Settings

AnyRedis: TypeAlias = Redis | RedisCluster
SENTINEL_TIMEOUT = 2.0  # a Sentinel that does not answer within this is passed over for the next
REPLICA_WAIT_MS = 1000  # how long a write that queues a run waits for a replica to have it


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A pool of connections to the primary the Sentinels name that, like the one-server pool,
    waits for a connection to be free rather than failing: the same bound, the same behaviour."""


class SentinelPrimary(Redis):
    """A client of a Sentinel setup's primary whose `aclose` also closes its connections to the
    Sentinels (redis-py leaves them open)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await close_sentinels(self)


async def close_sentinels(client: Redis) -> None:
    """Close the connections a client of a Sentinel setup's primary holds to the Sentinels (arq's
    client, or ours); nothing for any other client."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    for sentinel in manager.sentinels if manager is not None else ():
        await sentinel.aclose()


class PackedInC:
    """Packs a connection's commands with hiredis, in C, into one buffer: redis-py's asyncio
    connections pack them in Python, argument by argument, as a list the transport then writes item
    by item; that was a quarter of what a request to the gateway cost (a script call has 20 to 40
    arguments). The same bytes: hiredis's packing is redis-py's own for its sync connections."""

    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._serializer.pack(*args)  # type: ignore[no-any-return]

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(self._serializer.pack(*command)[0] for command in commands)]


_PACKED_IN_C: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packed_in_c(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    if (packed := _PACKED_IN_C.get(connection_class)) is None:
        name = f"PackedInC{connection_class.__name__}"
        packed = _PACKED_IN_C[connection_class] = type(name, (PackedInC, connection_class), {})
    return packed


def pack_in_c(pool: ConnectionPool) -> None:
    """Make the pool's connections `PackedInC` (of whatever class its URL chose: TCP, TLS, Unix, Sentinel)."""
    pool.connection_class = _packed_in_c(pool.connection_class)


def redis_client(url: str, max_connections: int, wait: float | None, **options: Any) -> Redis:
    """A client of one server, or of the primary of a Sentinel setup: at most `max_connections`, a
    command waiting up to `wait` seconds (None: as long as it takes) for one to be free."""
    setup = sentinel_setup(url)
    if setup is None:
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=wait, **options)
        pack_in_c(pool)
        return Redis.from_pool(pool)  # closes the pool with the client
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(setup.sentinels),
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT},
    )
    client: Redis = sentinel.master_for(
        setup.service,
        redis_class=SentinelPrimary,
        connection_pool_class=BlockingSentinelPool,
        db=setup.db,
        username=setup.username,
        password=setup.password,
        max_connections=max_connections,
        timeout=wait,
        **options,
    )
    pack_in_c(client.connection_pool)
    return client


def sessions_client(settings: Settings, max_connections: int, wait: float | None, **options: Any) -> AnyRedis:
    """A client of the sessions' Redis. A cluster client opens connections per node as they are
    needed (redis-py's cluster client has no waiting pool)."""
    if settings.redis_cluster:
        cluster: RedisCluster = RedisCluster.from_url(settings.redis_url, **options)
        return cluster
    return redis_client(settings.redis_url, max_connections, wait, **options)


def queue_client(settings: Settings, max_connections: int, wait: float | None, **options: Any) -> Redis | None:
    """A client of the queue's Redis when it is apart from the sessions' (`queue_redis_url`), else None."""
    if settings.queue_redis_url is None:
        return None
    return redis_client(settings.queue_redis_url, max_connections, wait, **options)


def replicated(url: str) -> bool:
    """Whether writes to this Redis should wait for a replica (a Sentinel setup: a failover promotes a
    replica, and loses what it did not have yet)."""
    return sentinel_setup(url) is not None


async def write_replicated(redis: Redis, write: Callable[[Redis | Pipeline], Awaitable[Any]], wait: bool) -> Any:
    """`write(client)` (its commands), then, with `wait`, wait at most REPLICA_WAIT_MS for a replica
    to have it: WAIT counts the writes of its own connection, so both go in one pipeline. What `write`
    returned (a script's reply, in the pipeline's results), or its error as the script raised it."""
    if not wait:
        return await write(redis)
    async with redis.pipeline(transaction=False) as pipe:
        await write(pipe)
        pipe.execute_command("WAIT", 1, REPLICA_WAIT_MS)
        # Not raised by the pipeline, which would rewrite the message ("Command # 1 ... caused error").
        reply, _replicas = await pipe.execute(raise_on_error=False)
    if isinstance(reply, Exception):
        raise reply
    return reply
