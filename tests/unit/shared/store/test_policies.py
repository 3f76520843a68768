"""What a deployment wraps around the scripts (shared/store/scripts/policies.py), run by fakeredis's Lua:
with the queue on a Redis of its own, a run goes through its session's outbox."""

import json

import fakeredis
import pytest
from redis.asyncio import Redis

from tests.support.sessions import make_run, make_session
from tests.support.writes import AllWrites, Died
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.runs import Queued, Requeue, StartVerdict

# -- the queue on a Redis of its own -----------------------------------------------------------


@pytest.fixture
async def split(redis: Redis, settings: Settings) -> tuple[SessionStore, AllWrites, fakeredis.FakeAsyncRedis]:
    """Sessions on `redis`, the queue and the leases index on a second (fake) Redis."""
    settings = settings.model_copy(update={"queue_redis_url": "redis://queue.invalid:6379/0"})
    queue = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return SessionStore(redis, settings), AllWrites(redis, settings, queue=queue), queue


async def _queued_jobs(store: SessionStore, queue: Redis) -> list[str]:
    return [job.decode() for job in await queue.zrange(store.keys.queue, 0, -1)]


async def test_with_the_queue_apart_a_run_goes_through_the_session_s_outbox(
    split: tuple[SessionStore, AllWrites, fakeredis.FakeAsyncRedis], redis: Redis
) -> None:
    store, runs, queue = split
    session, run = make_session(), make_run()
    assert (await runs.queue_run(session.session_id, run, create=session)).queued is Queued.STARTED
    assert not await redis.exists(store.keys.queue)  # nothing of the queue's on the sessions' Redis
    assert json.loads(await queue.get(store.keys.arq_job(run.run_id)))["a"] == [session.session_id, run.run_id]
    assert await _queued_jobs(store, queue) == [run.run_id]
    assert await runs.leases.due(0, 10) == []  # the intent went once the job was pushed
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1")
    assert started is not None and started.verdict is StartVerdict.RUN
    assert await _queued_jobs(store, queue) == []
    assert not await redis.hexists(store.keys.session(session.session_id).meta, "dispatch")  # type: ignore[misc]


async def test_with_the_queue_apart_a_gateway_that_dies_before_the_push_loses_no_run(
    split: tuple[SessionStore, AllWrites, fakeredis.FakeAsyncRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, runs, queue = split

    async def dies(*args: object) -> None:
        raise Died("the gateway died here")

    session, run = make_session(), make_run()
    with monkeypatch.context() as patch:
        patch.setattr(runs.leases, "push", dies)
        with pytest.raises(Died):
            await runs.queue_run(session.session_id, run, create=session)
    assert await _queued_jobs(store, queue) == []  # recorded, never queued...
    [intent] = await queue.zrange(store.keys.lease_checks, 0, -1)  # ...but its intent is in the index
    assert intent.decode().startswith(session.session_id + " ")
    assert (await runs.look(session.session_id)).outcome is Requeue.PUSHED  # what a reaper does with it
    assert await _queued_jobs(store, queue) == [run.run_id]
    assert await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1") is not None
