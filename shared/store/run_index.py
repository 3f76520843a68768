"""The runs index: what the operator console lists and searches without a scan of Redis's keys.

Every run a gateway queues (`SessionWrites.queue_run`: a session's first run and each follow-up, from
every protocol) is added, by the script that queues it, in the same step (`with_queueing`); on a Redis
Cluster, where the index's keys are a slot of their own, right after that script (and again by a
request sent again, whose gateway may have died in between); to two sorted sets on the sessions' Redis, all runs'
and its tenant's (`<sid> <run id>` -> when it was queued, in microseconds), and a run id is mapped to
its session (a string kept as long as the session). The sets keep the newest `admin_index_runs`; what
a run is now (status, attempt, times) is read from its record when a page is shown, never copied here,
so the index cannot disagree with the session. An entry whose session is gone is dropped when a page
meets it. Child runs are not listed: they show in their session's tree of runs.

Beside it, the runs in trouble (`troubled`: failed, or taken over), listed where runs end, by the
script that ends them (lib/run_index.lua's index_troubled), children included, by when they ended, so
that runs queued never push them out of the overview. Not on a Redis Cluster (`has_troubled`).

Pages go newest first from a cursor (`<score> <member>`: scores may tie), each reading at most
`SCAN_BUDGET` entries, so a filter that matches few runs answers a short page with a cursor to go on
rather than a long wait.
"""

import re
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, cast

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import decode_run
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.shared.store.scripts.runs import IndexArgs
from tokentail.shared.store.scripts.sessions import IndexKeys, IndexRun
from tokentail.shared.vocabulary.records import PUBLIC_TENANT, RunRecord

SCAN_BUDGET = 1_000  # index entries one page may read
BATCH = 200  # read at once
FORKS_KEPT = 50  # a run's forks listed on its page, the newest
CURSOR_SCORE = re.compile(r"[0-9]{1,20}")  # a cursor's score: when its run was queued, in whole µs


class IndexedRun(NamedTuple):
    session_id: str
    run_id: str
    score: float  # when it was queued (µs): the cursor's part

    @property
    def cursor(self) -> str:
        return f"{self.score:.0f} {self.session_id} {self.run_id}"


class ListedRun(NamedTuple):
    run: RunRecord
    tenant: str  # its session's
    session_user: str | None  # its session's end user, if it names one


class Slice(NamedTuple):
    runs: list[IndexedRun]
    next_cursor: str | None  # None: the index has no older entry


def parse_cursor(cursor: str) -> tuple[float, str]:
    """(score, member) of a cursor a page gave; ValueError if it is not one. Its score is a whole
    number of µs, as `IndexedRun.cursor` writes it: `nan`, `inf` or `1e400`, which `float` would take,
    are no cursor (Redis refuses `nan` as a bound)."""
    score, _, member = cursor.partition(" ")
    if not CURSOR_SCORE.fullmatch(score) or not member or " " not in member:
        raise ValueError("not a cursor of this index")
    return float(score), member


class RunIndex:
    def __init__(self, redis: AnyRedis, settings: Settings) -> None:
        self._redis = redis
        self._scripts = ScriptRunner(redis, Topology())  # index_run.lua reads nothing of the topology
        self._keys = Keys(settings.key_prefix)
        self._keep = settings.admin_index_runs
        self._ttl = settings.session_ttl_seconds + settings.tombstone_ttl_seconds
        # Where the index shares the sessions' slot (one Redis), queue_run.lua lists a run as it queues it,
        # and lib/runs.lua's end_run a run in trouble as it ends it.
        self._with_queueing = not settings.redis_cluster

    @property
    def has_troubled(self) -> bool:
        """Whether runs in trouble are listed as they end (not on a Redis Cluster)."""
        return self._with_queueing

    def with_queueing(self, session_id: str, run_id: str) -> IndexArgs:
        """What queue_run.lua lists a run in the index with, in its own step; none on a cluster, where
        the caller lists it after (`add`)."""
        if not self._with_queueing:
            return IndexArgs.none()
        keys = self._keys
        return IndexArgs(
            keys.admin_runs,
            keys.tenant_admin_runs(""),
            keys.admin_run(run_id),
            time.time_ns() // 1000,
            self._keep,
            self._ttl,
        )

    async def add(self, tenant: str | None, session_id: str, run_id: str) -> None:
        """List a run just queued; `tenant`: its session's, read if the caller did not know it."""
        if tenant is None:
            owner = await cast(Awaitable[bytes | None], self._redis.hget(self._keys.session(session_id).meta, "tenant"))
            tenant = owner.decode() if owner else PUBLIC_TENANT
        keys = IndexKeys(self._keys.admin_runs, self._keys.tenant_admin_runs(tenant), self._keys.admin_run(run_id))
        await self._scripts(IndexRun(keys, session_id, run_id, time.time_ns() // 1000, self._keep, self._ttl))

    async def add_fork(self, session_id: str, run_id: str, fork_id: str, at: int) -> None:
        """List fork `fork_id`, made at event `at` inside run `run_id` of session `session_id`, among that
        run's forks (the newest FORKS_KEPT, for as long as the sessions are kept)."""
        key = self._keys.admin_forks(session_id, run_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {f"{fork_id} {at}": time.time_ns() // 1000})
            pipe.zremrangebyrank(key, 0, -FORKS_KEPT - 1)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def forks_of(self, session_id: str, run_id: str) -> list[tuple[str, int, float]]:
        """The forks made inside the run, newest first: each fork's session id, event and when (epoch s)."""
        rows = await self._redis.zrevrange(self._keys.admin_forks(session_id, run_id), 0, -1, withscores=True)
        forks = []
        for member, score in rows:
            fork_id, _, at = member.decode().partition(" ")
            forks.append((fork_id, int(at), score / 1e6))
        return forks

    async def newest_entry(self, tenant: str | None) -> list[tuple[bytes, float]]:
        """The newest entry (all runs', or a tenant's): what changes when a run is queued."""
        key = self._keys.tenant_admin_runs(tenant) if tenant else self._keys.admin_runs
        return await self._redis.zrevrange(key, 0, 0, withscores=True)  # type: ignore[no-any-return]

    async def session_of(self, run_id: str) -> str | None:
        found = await cast(Awaitable[bytes | None], self._redis.get(self._keys.admin_run(run_id)))
        return found.decode() if found else None

    async def newest(
        self,
        tenant: str | None,
        cursor: str | None,
        keep: Callable[[list[IndexedRun]], Awaitable[list[bool]]],
        limit: int,
        since: float | None = None,
        until: float | None = None,
        budget: int = SCAN_BUDGET,
        troubled: bool = False,
    ) -> Slice:
        """Up to `limit` runs of the index (a tenant's, or all; `troubled`: of those in trouble), newest
        first, after `cursor`, queued (or, in trouble, ended) between `since` and `until` (epoch seconds),
        that `keep` (given a batch, answering which to keep) keeps; reading at most `budget` entries."""
        key = self._key(tenant, troubled)
        top: float | str = "+inf" if until is None else until * 1e6
        seen_member = None
        if cursor is not None:
            top, seen_member = parse_cursor(cursor)
        bottom: float | str = "-inf" if since is None else since * 1e6
        kept: list[IndexedRun] = []
        read = 0
        while read < budget:
            want = min(BATCH, budget - read)
            rows = await self._redis.zrevrangebyscore(key, top, bottom, start=0, num=want + 1, withscores=True)
            batch = [_indexed(member, score) for member, score in rows]
            if seen_member is not None:  # those of the cursor's score at or above its member came already
                seen = (float(top), seen_member)
                batch = [run for run in batch if (run.score, f"{run.session_id} {run.run_id}") < seen]
            if not batch:
                return Slice(kept, None)
            batch = batch[:want]
            read += len(batch)
            for i, (run, wanted) in enumerate(zip(batch, await keep(batch), strict=True)):
                if wanted:
                    kept.append(run)
                if len(kept) == limit:
                    more = i < len(batch) - 1 or len(rows) > want
                    return Slice(kept, run.cursor if more else None)
            last = batch[-1]
            top, seen_member = last.score, f"{last.session_id} {last.run_id}"
            if len(rows) <= want:
                return Slice(kept, None)
        return Slice(kept, f"{float(top):.0f} {seen_member}")

    def _key(self, tenant: str | None, troubled: bool) -> str:
        if troubled:
            return self._keys.admin_troubled(tenant)
        return self._keys.tenant_admin_runs(tenant) if tenant else self._keys.admin_runs

    async def now(self, batch: list[IndexedRun]) -> list[ListedRun | None]:
        """Each entry's run as its record says now, with its session's tenant and user, in one round
        trip; None for one whose session is gone (for `drop`)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in batch:
                keys = self._keys.session(entry.session_id)
                pipe.hget(keys.runs, entry.run_id)
                pipe.hmget(keys.meta, ["tenant", "user"])
            replies = await pipe.execute()
        listed: list[ListedRun | None] = []
        for raw, (owner, user) in zip(replies[::2], replies[1::2], strict=True):
            gone = raw is None or owner is None
            listed.append(None if gone else ListedRun(decode_run(raw), owner.decode(), user.decode() if user else None))
        return listed

    async def drop(self, tenant: str | None, runs: list[IndexedRun], troubled: bool = False) -> None:
        """Entries whose session is gone (expired or deleted)."""
        if not runs:
            return
        members = [f"{run.session_id} {run.run_id}" for run in runs]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self._key(None, troubled), *members)
            if tenant:
                pipe.zrem(self._key(tenant, troubled), *members)
            await pipe.execute()


def _indexed(member: bytes, score: float) -> IndexedRun:
    session_id, _, run_id = member.decode().partition(" ")
    return IndexedRun(session_id, run_id, score)
