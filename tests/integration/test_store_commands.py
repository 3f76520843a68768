"""The store's plain commands, which the worker, the gateway's commands, the console, the limits and the
protocols call instead of Redis (tests/unit/project/test_layout.py holds them to it), on one Redis and on a
Redis Cluster: runs of sessions on every slot read at once, the child follower's reads of the stream, the
indexes by clients' names, the tenants' counts, a deliverer's and the archiver's keys. Each reads back
what Redis holds after the call, so that a call sent to the wrong node, or not sent, fails here."""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis, RedisCluster

from tests.support.sessions import make_run, make_session, start_a_run
from tests.support.writes import AllWrites
from tokentail.gateway.access.limits import StreamSlots
from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store import client_indexes, reads
from tokentail.shared.store.archive_index import look_again_at
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.run_index import IndexedRun
from tokentail.shared.store.tenant_counts import count_spawn, uncount_spawn
from tokentail.shared.store.webhook_index import SessionHooks


@dataclass
class Store:
    redis: AnyRedis
    settings: Settings
    runs: AllWrites

    @property
    def keys(self) -> Keys:
        return self.runs.keys


@pytest.fixture(params=["one Redis", "a Redis Cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "one Redis":
        settings: Settings = request.getfixturevalue("settings")
        redis: AnyRedis = Redis.from_url(str(settings.redis_url))
        queue = None
    else:
        settings = request.getfixturevalue("cluster_settings")
        redis = RedisCluster.from_url(str(settings.redis_url))
        queue = Redis.from_url(str(settings.queue_redis_url))
    yield Store(redis, settings, AllWrites(redis, settings, queue=queue))
    for client in (redis, queue):
        if client is not None:
            await client.aclose()


async def test_runs_of_sessions_on_every_slot_are_read_at_once(store: Store) -> None:
    queued = []
    for _ in range(6):  # on a cluster, sessions on each of its primaries
        session, run = make_session(), make_run()
        await store.runs.queue_run(session.session_id, run, create=session)
        queued.append((session.session_id, run.run_id))
    missing = (queued[0][0], "run-nobody-queued")
    records = await reads.read_runs(store.redis, [(store.keys.session(sid), rid) for sid, rid in [*queued, missing]])
    assert [record.run_id if record else None for record in records] == [rid for _, rid in queued] + [None]
    assert await reads.active_run_id(store.redis, store.keys.session(queued[0][0])) == queued[0][1]
    one = await reads.read_runs_of(store.redis, store.keys.session(queued[0][0]), [queued[0][1], "nobody"])
    assert [record.run_id if record else None for record in one] == [queued[0][1], None]

    gone = IndexedRun("a-session-gone", "its-run", 1.0)
    listed = await store.runs.run_index.now([*(IndexedRun(sid, rid, 1.0) for sid, rid in queued), gone])
    assert [(entry.run.run_id, entry.tenant) if entry else None for entry in listed] == [
        *((rid, "public") for _, rid in queued),
        None,
    ]


async def test_the_child_follower_reads_its_session_s_stream(store: Store) -> None:
    session_id, _ = await start_a_run(store.runs)
    keys = store.keys.session(session_id)
    followed = await reads.follow_stream(store.redis, keys, "0-0", 10, 100)
    assert [fields[b"type"] for _, fields in followed] == [b"run.queued", b"run.started"]
    assert await reads.stream_from(store.redis, keys, "2", 10) == followed[1:]
    assert await reads.follow_stream(store.redis, keys, followed[-1][0].decode(), 10, 10) == []  # waited, none came
    assert not await reads.steers_waiting(store.redis, keys)
    assert await reads.steer_texts(store.redis, keys) == {}


async def test_the_indexes_by_clients_names_keep_what_they_are_given(store: Store) -> None:
    keys, kept = store.keys, 60
    tasks = client_indexes.TaskIndex(store.redis, keys, kept)
    for at, task_id in enumerate(["t1", "t2", "t3"]):
        await tasks.add("acme", "helper", task_id, 1000.0 + at)
    await tasks.drop("acme", "helper", ["t2"])
    assert await tasks.ids("acme", "helper") == ["t3", "t1"]

    await client_indexes.name_client_run(store.redis, keys, kept, "acme", ["run-1"], ["chat-a", ""], "s1 r1 th1")
    await client_indexes.name_client_run(store.redis, keys, kept, "acme", ["run-1"], ["chat-b", ""], "s2 r2 th2")
    named = [
        await client_indexes.client_run_named(store.redis, keys, kept, "acme", "run-1", scope)
        for scope in ("chat-a", "chat-b", "")
    ]
    assert named == ["s1 r1 th1", "s2 r2 th2", "s1 r1 th1"]  # the tenant's: the first chat's, not overwritten

    await client_indexes.point_chat(store.redis, keys, store.settings, "chat-session", "its-branch")
    assert await client_indexes.chat_branch(store.redis, keys, store.settings, "chat-session") == "its-branch"


async def test_the_tenants_counts_count_and_their_slots_renew_and_go(store: Store) -> None:
    keys = store.keys
    minute = keys.spawns("acme", int(time.time() // 60))
    assert [await count_spawn(store.redis, minute), await count_spawn(store.redis, minute)] == [1, 2]
    await uncount_spawn(store.redis, minute)
    assert int(await store.redis.get(minute)) == 1 and 0 < await store.redis.ttl(minute) <= 120

    slots = StreamSlots(store.redis, keys, limit=4, per_token=2)
    tenant_key, token_key = keys.tenant_streams("acme"), keys.token_streams("acme", "browser")
    held = await slots.take("acme", "browser")
    assert held is not None
    for key in (tenant_key, token_key):  # as if it were about to lapse
        await store.redis.zadd(key, {held: 1}, xx=True)
    now_ms = time.time() * 1000
    await slots.renew()
    for key in (tenant_key, token_key):
        assert (await store.redis.zscore(key, held) or 0) > now_ms and await store.redis.pttl(key) > 0
    await slots.release(held)
    await slots.flush()
    assert await store.redis.zcard(tenant_key) == 0 and await store.redis.zcard(token_key) == 0


async def test_a_deliverer_s_and_the_archiver_s_keys(store: Store) -> None:
    session_id, _ = await start_a_run(store.runs)
    keys, hooks = store.keys.session(session_id), SessionHooks(store.redis, store.keys)
    assert await hooks.first(session_id) is None
    await hooks.note_posted(session_id, "wh-1", ["https://a.example", "https://b.example"], 60)
    assert await hooks.posted_to(session_id, "wh-1") == {"https://a.example", "https://b.example"}
    await hooks.all_posted(session_id, "wh-1")
    assert await hooks.posted_to(session_id, "wh-1") == set()

    assert await reads.archived_through(store.redis, keys) == 0
    assert not await reads.is_gone(store.redis, keys)
    await look_again_at(store.redis, store.keys, "never-listed", 5)  # not put there: only moved
    assert await store.redis.zscore(store.keys.archive_checks, "never-listed") is None
