"""The checks indexes' scripts through their contracts (shared/store/scripts/checks.py): what each reads
from its index and how it settles an entry, on fakeredis. (The indexes at work, with their reapers,
deliverers and archivers: tests/integration/test_topology.py, test_webhooks.py, test_archive.py.)"""

import json
import time

from redis.asyncio import Redis

from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.jobs import RUN_JOB
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.lease_index import LeaseIndex
from tokentail.shared.store.scripts.checks import Archived, ArchivedKeys, Archiving, DropHook, Due, HooksKey
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.shared.store.webhook_index import Claim, WebhookIndex


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_leases_due_come_oldest_first_with_their_scores_and_settle_only_unchanged(
    redis: Redis, settings: Settings
) -> None:
    leases, key = LeaseIndex(redis, settings), Keys(settings.key_prefix).lease_checks
    await redis.zadd(key, {"s2": 2000, "s1 intent": 1000, "later": now_ms() + 60_000})
    due = await leases.due(0, 10)
    assert due == [Due("s1 intent", b"1000"), Due("s2", b"2000")]
    assert [(e.session_id, e.is_intent) for e in due] == [("s1", True), ("s2", False)]
    assert await leases.due(1, 10) == [Due("s2", b"2000")]  # a page further on

    await redis.zadd(key, {"s2": 3000})  # a worker wrote it meanwhile: the reaper leaves it
    await leases.settle(due[1])
    await leases.settle(due[0], look_again_at=5000)
    assert await redis.zrange(key, 0, 1, withscores=True) == [(b"s2", 3000), (b"s1 intent", 5000)]


async def test_a_claim_moves_due_webhook_entries_ahead_and_is_settled_only_unchanged(
    redis: Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    index = WebhookIndex(redis, keys)
    await redis.zadd(keys.webhook_checks, {"s1": 1000, "s2": 2000, "later": now_ms() + 60_000})
    before = now_ms()
    claimed = await index.claim(10, 30_000)
    assert [claim.session_id for claim in claimed] == ["s1", "s2"]
    assert len({claim.score for claim in claimed}) == 1 and int(claimed[0].score) >= before + 30_000
    assert await index.claim(10, 30_000) == []  # claimed: no other deliverer takes them

    await index.due_now("s2")  # a new event came
    await index.settle(claimed[1])
    await index.settle(claimed[0])
    assert await redis.zrange(keys.webhook_checks, 0, -1) == [b"s2", b"later"]
    await index.settle(Claim("later", "1"), 7)  # not what it reads: left alone
    assert await redis.zscore(keys.webhook_checks, "later") > now_ms()


async def test_a_job_pushed_twice_is_queued_once(redis: Redis, settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    leases = LeaseIndex(redis, settings)
    await leases.push("s1", b"job-1 run-1")
    await leases.push("s1", b"job-1 run-1")
    assert await redis.zrange(keys.queue, 0, -1) == [b"job-1"]
    job = json.loads(await redis.get(keys.arq_job("job-1")))
    assert (job["f"], job["a"]) == (RUN_JOB, ["s1", "run-1"])
    assert 0 < await redis.pttl(keys.arq_job("job-1"))


async def test_a_hook_is_dropped_only_while_it_is_the_head(redis: Redis, settings: Settings) -> None:
    hooks = Keys(settings.key_prefix).session("s1").hooks
    await redis.rpush(hooks, "first", "second")  # type: ignore[misc]
    runner = ScriptRunner(redis, Topology())
    assert await runner(DropHook(HooksKey(hooks), b"second")) is False
    assert await runner(DropHook(HooksKey(hooks), b"first")) is True
    assert await redis.lrange(hooks, 0, -1) == [b"second"]  # type: ignore[misc]


async def test_archived_says_done_more_or_gone(redis: Redis, settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    k = keys.session("s1")
    runner = ScriptRunner(redis, Topology(archive=True))

    def archived(seq: int) -> Archived:
        keys_of = ArchivedKeys(k.meta, k.runs, k.events, k.gone, k.steered, k.kept_steps, keys.archive_checks)
        return Archived(keys_of, "s1", seq, "10", 60)

    await redis.zadd(keys.archive_checks, {"s1": 10})
    await redis.hset(k.meta, mapping={"seq": 5, "active_run": ""})  # type: ignore[misc]
    assert await runner(archived(3)) is Archiving.MORE  # events 4 and 5 to come
    assert await redis.hget(k.meta, "archived") == b"3" and await redis.ttl(k.meta) == -1  # type: ignore[misc]
    assert await runner(archived(5)) is Archiving.DONE
    assert 0 < await redis.ttl(k.meta) <= 60 and await redis.zscore(keys.archive_checks, "s1") is None
    await redis.delete(k.meta)
    assert await runner(archived(5)) is Archiving.GONE
