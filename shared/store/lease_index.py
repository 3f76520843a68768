"""The leases index: where reapers find the runs that may have lost their worker, or their job.

The truth is in each session's keys, written by its scripts: a run's lease and its deadline, and the
job owed to a run queued but not started (the session's `dispatch`: lib/jobs.lua's Jobs). The index, a
sorted set beside the queue, lists the sessions to look at and when. On one Redis, the scripts keep
it exact in the same step as the lease (the session, at its lease's deadline; a queued run's, at its
first look). With the queue apart, no script can reach it (a Redis Cluster forbids writing outside
the session's slot), and the callers keep it as a list of places to look, complete because it is
written before the truth it points at: a caller whose script may owe a job first adds an intent
(`<sid> <run id>` for a run queued, else `<sid> <random>`), looked at after `queued_look_ms`; a
worker's claim of a job (claim_jobs.lua, on this Redis: worker/process/arq_shell.py) watches the
job's session (`<sid>`, due when a lease taken then would run out) before it starts the job's run,
and drops the intent of the job's run, which the watch covers from then on. A reaper drops or moves
an entry after looking at the session, and only if nobody wrote the entry meanwhile
(settle_check.lua): a run claimed while a reaper looked keeps its entry. And the worker whose run
ended, its next run's job pushed, drops its watch with the job's finish (finish_jobs.lua), on the
same terms: unless it was written since (a reaper moved it, or the claim of the session's next run
wrote it again). So reapers look at no entry of a run that ended within a lease.

An entry is looked at once its time comes: a lease is found renewed (the entry moves to the new
deadline), or run out (the run is requeued), or gone with its run; a run still owed its job gets it
pushed again (pushing twice queues once: a no-op while the queue holds it; else its caller died
before pushing it, or arq ended the job without starting the run) and is looked at again later, for
as long as it waits.
"""

import secrets
import time
from typing import Protocol

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


class Pickup(Protocol):
    """What a worker's pickup (worker/process/arq_shell.py) does for the index in its own calls."""

    def watched(self, job_id: str) -> bool:
        """Whether its claim of the job wrote the watch of the job's session."""
        ...

    def take_later(self, job_id: str) -> None:
        """Take the job out of arq's queue with its next call on the queue's Redis."""
        ...

    def ended(self, job_id: str) -> None:
        """The job's run ended: its watch goes with the job's finish."""
        ...


class LeaseIndex:
    def __init__(self, queue: Redis, settings: Settings) -> None:
        """`queue`: the queue's Redis (the sessions' Redis when they share one)."""
        self.redis = queue
        self.pickup: Pickup | None = None  # a worker's, which claims its jobs on this Redis
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

    async def watch(self, session_id: str, job_id: str) -> None:
        """Before claiming the session's run for job `job_id`, with the queue apart: look at its lease
        when the lease would run out. Nothing to write if the pickup's claim of the job wrote it."""
        if self.pickup is not None and self.pickup.watched(job_id):
            return
        await self.redis.zadd(self._key, {session_id: _now_ms() + self._lease_ms})

    async def look_now(self, session_id: str) -> None:
        """After a script made a deadline of the session's due now (an operator's expiry), with the
        queue apart: a reaper looks at it at once."""
        await self.redis.zadd(self._key, {session_id: _now_ms()})

    async def intend(self, session_id: str, run_id: str | None = None) -> None:
        """Before a script that may leave a job in the session's outbox: the session is looked at
        after `queued_look_ms`, and for as long as its run waits for the job. `run_id`: the run it
        queues, whose job's claim drops the intent (`intent_of`)."""
        member = intent_of(session_id, run_id or secrets.token_hex(4))
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
        """Take a claimed run's job out of arq's queue (with the queue apart, start_run.lua cannot): with
        the pickup's next call, a poll's claim or a finish, well before its in-progress mark lapses."""
        if self.pickup is not None:
            self.pickup.take_later(job_id)
            return
        await self.redis.zrem(self._keys.queue, job_id)

    def ended(self, job_id: str) -> None:
        """The run of job `job_id` ended (its terminal event written, the next run's job pushed): the
        watch its claim wrote is dropped with the job's finish."""
        if self.pickup is not None:
            self.pickup.ended(job_id)


def intent_of(session_id: str, about: str) -> str:
    """An intent's member: `about` a run (its id: claim_jobs.lua drops it) or random."""
    return f"{session_id} {about}"


def _now_ms() -> int:
    # This process's clock: an entry looked at a little early is found renewed, and moved.
    return int(time.time() * 1000)
