"""The write side's common ground: every change to a session is a script (shared/store/scripts/), called
through one runner wrapped once for the deployment's topology (shared/store/scripts/policies.py).

Two audiences build on it: the gateway's commands (gateway/commands/writes.py: create, queue,
answer, cancel, delete, fork) and a worker's writes under a run's lease (worker/writes/run_writes.py:
start, append, ask, renew, hand over). A script touches one session's keys only (plus arq's, when
the queue shares the Redis), so the sessions' Redis may be a Cluster; with the queue apart, the
leases and webhooks indexes are kept beside the queue (shared/store/lease_index.py, webhook_index.py).
"""

from typing import TYPE_CHECKING

from redis.asyncio import Redis, RedisCluster

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.lease_index import LeaseIndex
from tokentail.shared.store.run_index import RunIndex
from tokentail.shared.store.run_tree import RunTree
from tokentail.shared.store.scripts.policies import sessions_runner, with_policies
from tokentail.shared.store.scripts.runs import RunScope
from tokentail.shared.store.webhook_index import WebhookIndex

if TYPE_CHECKING:
    from tokentail.shared.store.archive import Archive


class Writes:
    def __init__(
        self,
        redis: AnyRedis,
        settings: Settings,
        queue: Redis | None = None,
        archive: "Archive | None" = None,
    ) -> None:
        """`redis`: the sessions' Redis (a `RedisCluster` with `settings.redis_cluster`); `queue`:
        the queue's, when it is apart (`settings.queue_redis_url`); `archive`: where a session Redis
        forgot is brought back from."""
        if queue is None and isinstance(redis, RedisCluster):
            raise ValueError("a Redis Cluster cannot hold the job queue: give the queue's Redis")
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.scope = RunScope(self.keys, settings)
        self.leases = LeaseIndex(queue or redis, settings)  # type: ignore[arg-type]
        self.webhooks = WebhookIndex(queue or redis, self.keys)  # type: ignore[arg-type]
        self.runner = sessions_runner(redis, settings)
        self.run = with_policies(self.runner, settings, self.leases, self.webhooks, archive)
        self.tree = RunTree(self.run, self.scope, redis, self.leases.redis)
        self.run_index = RunIndex(redis, settings)  # the console's (the gateway's writes keep it)

    async def writable(self) -> None:
        """Raise as Redis would if it refuses writes now (out of memory, a read-only replica)."""
        await self.redis.set(self.keys.probe, 1, px=10_000)
        if self.leases.redis is not self.redis:
            await self.leases.redis.set(self.keys.probe, 1, px=10_000)
