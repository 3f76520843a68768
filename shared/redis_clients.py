"""The Redis clients of both processes, for the topology the settings name.

The sessions' Redis (`redis_url`) is one server or, with `redis_cluster`, a Redis Cluster; the job
queue and the leases index live on `queue_redis_url` when it is set (arq is single-node), else on
the sessions' Redis too.
"""

from typing import Any, TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster

from tokentail.shared.settings import Settings

AnyRedis: TypeAlias = Redis | RedisCluster


def sessions_client(settings: Settings, max_connections: int, wait: float | None, **options: Any) -> AnyRedis:
    """A client of the sessions' Redis. On one server, at most `max_connections`, a command waiting
    up to `wait` seconds (None: as long as it takes) for one to be free. A cluster client opens
    connections per node as they are needed (redis-py's cluster client has no waiting pool)."""
    if settings.redis_cluster:
        cluster: RedisCluster = RedisCluster.from_url(str(settings.redis_url), **options)
        return cluster
    pool = BlockingConnectionPool.from_url(
        str(settings.redis_url), max_connections=max_connections, timeout=wait, **options
    )
    return Redis.from_pool(pool)  # closes the pool with the client


def queue_client(settings: Settings, max_connections: int, wait: float | None, **options: Any) -> Redis | None:
    """A client of the queue's Redis when it is apart from the sessions' (`queue_redis_url`), else None."""
    if settings.queue_redis_url is None:
        return None
    pool = BlockingConnectionPool.from_url(
        str(settings.queue_redis_url), max_connections=max_connections, timeout=wait, **options
    )
    return Redis.from_pool(pool)
