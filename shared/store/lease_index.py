"""The leases index: where reapers find the runs that may have lost their worker, or their job.

The truth is in each session's keys, written by its scripts: a run's lease and its deadline, and the
job owed to a run queued but not started (the session's `dispatch`: lib/jobs.lua's Jobs). The index, a
sorted set beside the queue, lists the sessions to look at and when. On one Redis, the scripts keep
it exact in the same step as the lease (the session, at its lease's deadline; a queued run's, at its
first look). With the queue apart, no script can reach it (a Redis Cluster forbids writing outside
the session's slot), and the callers keep it as a list of places to look, complete because it is
written before the truth it points at: a worker adds its session before it claims a run, and a caller
whose script may owe a job first adds an intent (`<sid> <random>`), looked at after `queued_look_ms`.
Only a reaper drops or moves an entry, after looking at the session, and only if nobody wrote the
entry meanwhile (settle_check.lua): a run claimed while a reaper looked keeps its entry.

An entry is looked at once its time comes: a lease is found renewed (the entry moves to the new
deadline), or run out (the run is requeued), or gone with its run; a run still owed its job gets it
pushed again (pushing twice queues once: a no-op while the queue holds it; else its caller died
before pushing it, or arq ended the job without starting the run) and is looked at again later, for
as long as it waits.
"""

import secrets
import time

from redis.asyncio import Redis

from tokentail.shared.connections.redis_clients import replicated, write_replicated
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.scripts.checks import (
    Due,
    ExpiredLeases,
    IndexKey,
    JobArgs,
    PushJob,
    QueueKey,
    SettleCheck,
    UnqueueJob,
    queued_look_ms,
)
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.runner import ScriptRunner


class LeaseIndex:
    def __init__(self, queue: Redis, settings: Settings) -> None:
        """`queue`: the queue's Redis (the sessions' Redis when they share one)."""
        self.redis = queue
        self._keys = Keys(settings.key_prefix)
        self._key = self._keys.lease_checks
        self._index = IndexKey(self._key)
        self._job = JobArgs.of(self._keys)
        self._lease_ms = settings.lease_ms
        # On a Sentinel setup a failover promotes a replica, losing what it did not have yet: a job
        # pushed counts as queued once a replica has it too.
        self._replica = replicated(settings.queue_redis_url or settings.redis_url)
        # The index scripts read nothing of the topology: the default one will do.
        self._scripts = ScriptRunner(queue, Topology(), acknowledge=self._replica)

    async def watch(self, session_id: str) -> None:
        """Before claiming the session's run, with the queue apart: look at its lease when the lease
        would run out."""
        await self.redis.zadd(self._key, {session_id: _now_ms() + self._lease_ms})

    async def look_now(self, session_id: str) -> None:
        """After a script made a deadline of the session's due now (an operator's expiry), with the
        queue apart: a reaper looks at it at once."""
        await self.redis.zadd(self._key, {session_id: _now_ms()})

    async def intend(self, session_id: str) -> None:
        """Before a script that may leave a job in the session's outbox: the session is looked at
        after `queued_look_ms`, and for as long as its run waits for the job."""
        member = f"{session_id} {secrets.token_hex(4)}"
        # Replicated first: a promoted replica missing the job then has the intent (writes replicate in
        # order), and a reaper pushes the job again.
        score = _now_ms() + queued_look_ms(self._lease_ms)
        await write_replicated(self.redis, lambda client: client.zadd(self._key, {member: score}), self._replica)

    async def due(self, offset: int, count: int) -> list[Due]:
        """Entries whose time came (the queue's Redis time), oldest first: one page."""
        return (await self._scripts(ExpiredLeases(self._index, offset, count))).due

    async def settle(self, entry: Due, look_again_at: int | None = None) -> None:
        """Drop the entry (or move it to `look_again_at`, ms), unless it was written since it was read."""
        next_score = str(look_again_at) if look_again_at else ""
        await self._scripts(SettleCheck(self._index, entry.member, entry.score, next_score))

    async def push(self, session_id: str, dispatch: bytes) -> bool:
        """Push the job an outbox held (`<job_id> <run_id> <tenant> <user>`) to arq's queue, or its
        tenant's line; pushing twice queues once. Whether it pushed it (the queue did not hold it)."""
        return await self._scripts(PushJob(QueueKey(self._keys.queue), self._job, session_id, dispatch))

    async def unqueue(self, dispatch: bytes) -> None:
        """Take a job an outbox held out of its tenant's line, if it still waits there: its run ended."""
        await self._scripts(UnqueueJob(QueueKey(self._keys.queue), self._job, dispatch))

    async def take(self, job_id: str) -> None:
        """Take a claimed run's job out of arq's queue (with the queue apart, start_run.lua cannot)."""
        await self.redis.zrem(self._keys.queue, job_id)


def _now_ms() -> int:
    # This process's clock: an entry looked at a little early is found renewed, and moved.
    return int(time.time() * 1000)
