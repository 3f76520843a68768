"""Redis past one node: the sessions on a local Redis Cluster of three primaries, the job queue on a
Redis of its own. Every path that crosses the two (a job queued through a session's outbox, a lease
found by the index beside the queue) is tested at the instant a process would die in between."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
import pytest
import redis as sync_redis
from arq import constants
from arq.connections import RedisSettings, create_pool
from arq.worker import func
from redis.asyncio import Redis, RedisCluster

from tests.clients.sse_client import read_events
from tests.integration.test_hub import DIRECT, Follower, _append, _live
from tests.servers.redis_cluster import move_slot
from tests.servers.webhook_receiver import Receiver
from tests.support.sessions import completion, delta_of, make_run, make_session, start_a_run
from tests.support.waiting import eventually, scaled
from tests.support.writes import AllWrites, Died
from tokentail.gateway.live.hub import StreamHub
from tokentail.redis_server import LocalCluster
from tokentail.shared.connections.round_trips import ClusterRoundTrips
from tokentail.shared.features.admission import Admission
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store import jobs
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.pickup import ClaimedJob
from tokentail.shared.store.scripts.runs import Asked, Queued, Requeue, StartVerdict
from tokentail.shared.vocabulary.records import Question, RunRecord, SessionRecord
from tokentail.worker.process.arq_shell import BatchedPickup
from tokentail.worker.process.reaper import Reaper
from tokentail.worker.process.webhook_delivery import WebhookDeliverer
from tokentail.worker.writes.run_writes import RunLease


@pytest.fixture
def settings(cluster_settings: Settings) -> Settings:
    return cluster_settings


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(str(settings.redis_url))
    yield client
    await client.aclose()


@pytest.fixture
async def queue(cluster_queue_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(cluster_queue_url)
    yield client
    await client.aclose()


@pytest.fixture
def store(sessions: RedisCluster, settings: Settings) -> SessionStore:
    return SessionStore(sessions, settings)


@pytest.fixture
def runs(sessions: RedisCluster, queue: Redis, settings: Settings) -> AllWrites:
    return AllWrites(sessions, settings, queue=queue)


def _reaper(runs: AllWrites) -> Reaper:
    return Reaper(runs, interval=1.0, lease_seconds=runs.settings.lease_ms / 1000)


async def _make_due(store: SessionStore, queue: Redis) -> None:
    """Every entry of the leases index due now: as if its time had come."""
    for member in await queue.zrange(store.keys.lease_checks, 0, -1):
        await queue.zadd(store.keys.lease_checks, {member: 0})


async def _queued_jobs(store: SessionStore, queue: Redis) -> list[str]:
    return [job.decode() for job in await queue.zrange(store.keys.queue, 0, -1)]


async def test_runs_stream_end_to_end_with_sessions_on_every_shard_and_the_queue_apart(
    start_gateway: Any, start_worker: Any, cluster: LocalCluster, queue: Redis, settings: Settings
) -> None:
    gateway = await start_gateway()
    await start_worker()
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(20.0)) as client:
        created = [
            (
                await client.post(
                    "/v1/sessions", json={"input": f"question {i}", "params": {"tokens": 20, "tokens_per_second": 200}}
                )
            ).json()
            for i in range(30)  # on all three primaries, but for a chance of 3 * (2/3)^30
        ]
        streams = await asyncio.gather(*(read_events(client, session["events_url"]) for session in created))
        # The console reads the sessions on every shard and the workers and lines on the queue's Redis.
        listed = (await client.get("/v1/admin/runs", params={"limit": 200})).json()["runs"]
        assert {run["run_id"] for run in listed} == {session["run_id"] for session in created}
        last = created[-1]
        timeline = await client.get(f"/v1/admin/sessions/{last['session_id']}/runs/{last['run_id']}/timeline")
        assert timeline.json()["stages"][-1]["status"] == "completed"
        assert (await client.get("/v1/admin/overview")).json()["tenants"][0]["tenant"] == "public"
    for received in streams:
        assert received.ids == list(range(1, len(received.ids) + 1))  # every id once, in order
        assert received.events[-1][1] == "run.completed" and received.events[-1][2]["output"]
    # The sessions landed on every primary, and the gateway's hub followed each shard on a link of its own.
    with sync_redis.RedisCluster.from_url(cluster.url) as client:
        shards = {client.get_node_from_key(f"{settings.key_prefix}:{{{c['session_id']}}}:events").name for c in created}
    assert len(shards) == 3
    assert set(gateway.app.state.hub._pubsub.links) == shards
    # The queue's Redis holds arq's keys and the index; the cluster holds none of them. And the runs
    # all ended within a lease: their claims dropped their intents, their finishes their watches, so the
    # reapers have nothing to look at.
    index = f"{settings.key_prefix}:lease-checks"
    await eventually(lambda: _no_entry(queue, index), what="the leases index emptied")
    with sync_redis.RedisCluster.from_url(cluster.url) as client:
        for pattern in (f"{settings.key_prefix}:queue*", f"{settings.key_prefix}:lease-checks", "arq:*"):
            assert not client.keys(pattern, target_nodes="primaries")


async def test_a_fork_inside_a_run_goes_on_through_the_fork_s_outbox_on_another_shard(
    start_gateway: Any, start_worker: Any
) -> None:
    # Time travel (gateway/commands/branching.py `fork_at`): the fork is written in its own slot, its run's
    # job pushed from its outbox to the queue apart, and it goes on from the source's event.
    gateway = await start_gateway()
    await start_worker()
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(20.0)) as client:
        created = (await client.post("/v1/sessions", json={"input": "What is 6 * 7?"})).json()
        source = await read_events(client, created["events_url"])
        at = next(seq for seq, kind, _ in source.events if kind == "tool.completed" and seq is not None)
        forked = await client.post(f"/v1/sessions/{created['session_id']}/fork", json={"at": at})
        assert forked.status_code == 201, forked.text
        fork_id = forked.json()["session_id"]
        fork = await read_events(client, f"/v1/sessions/{fork_id}/events")
    assert fork.events[:at] == source.events[:at]  # the copy, as the source's clients read it
    started_id, started, data = fork.events[at]
    assert (started_id, started, data["reason"], data["from_event_id"]) == (at + 1, "run.started", "fork", at)
    assert fork.events[-1][1] == "run.completed"
    assert fork.events[-1][2]["output"] == source.events[-1][2]["output"]
    assert fork.ids == list(range(1, len(fork.ids) + 1))


async def _no_entry(queue: Redis, index: str) -> bool:
    return not await queue.zcard(index)


async def test_a_run_on_a_cluster_is_cancelled_through_its_worker(
    start_gateway: Any, start_worker: Any, cluster: LocalCluster, settings: Settings
) -> None:
    gateway = await start_gateway()
    await start_worker()
    with sync_redis.Redis.from_url(cluster.url) as node:  # the worker listens for cancels on this node
        await eventually(lambda: node.pubsub_numsub(settings.key_prefix + ":cancel")[0][1] >= 1, interval=0.05)
    started = asyncio.Event()
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(20.0)) as client:
        body = {"input": "a long one", "params": {"tokens": 1000, "tokens_per_second": 20}}
        created = (await client.post("/v1/sessions", json=body)).json()

        def on_event(event: tuple[int | None, str, dict[str, Any]]) -> None:
            if event[1] == "message.delta":
                started.set()

        reading = asyncio.create_task(read_events(client, created["events_url"], on_event=on_event))
        await asyncio.wait_for(started.wait(), scaled(10))
        cancel = await client.post(f"/v1/sessions/{created['session_id']}/cancel")
        assert cancel.status_code == 202
        received = await asyncio.wait_for(reading, scaled(10))
    assert received.events[-1][1] == "run.cancelled"
    assert received.ids == list(range(1, len(received.ids) + 1))


async def test_a_run_is_queued_through_the_session_s_outbox_and_leaves_the_queue_when_claimed(
    store: SessionStore, runs: AllWrites, sessions: RedisCluster, queue: Redis
) -> None:
    session, run = make_session(), make_run()
    assert (await runs.queue_run(session.session_id, run, create=session)).queued is Queued.STARTED
    job = json.loads(await queue.get(store.keys.arq_job(run.run_id)))
    assert job["a"] == [session.session_id, run.run_id]
    assert await _queued_jobs(store, queue) == [run.run_id]
    assert await runs.leases.due(0, 10) == []  # the intent is looked at only if the run waits two leases
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1")
    assert started is not None and started.verdict is StartVerdict.RUN
    assert await _queued_jobs(store, queue) == []
    assert not await sessions.hexists(store.keys.session(session.session_id).meta, "dispatch")  # type: ignore[misc]


async def test_a_gateway_that_dies_between_its_script_and_the_push_loses_no_run(
    store: SessionStore, runs: AllWrites, queue: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def dies(*args: object) -> None:
        raise Died("the gateway died here")

    session, run = make_session(), make_run()
    with monkeypatch.context() as patch:
        patch.setattr(runs.leases, "push", dies)
        with pytest.raises(Died):
            await runs.queue_run(session.session_id, run, create=session)
    assert await _queued_jobs(store, queue) == []  # recorded, never queued...
    [intent] = await queue.zrange(store.keys.lease_checks, 0, -1)
    assert intent.decode().startswith(session.session_id + " ")  # ...but its intent is in the index
    await _make_due(store, queue)
    await _reaper(runs)._requeue_expired()
    assert await _queued_jobs(store, queue) == [run.run_id]
    assert await runs.leases.due(0, 10) == []
    assert await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1") is not None


async def test_a_queued_run_whose_job_arq_ended_unstarted_is_queued_again_on_the_queue_apart(
    store: SessionStore, runs: AllWrites, queue: Redis
) -> None:
    session, run = make_session(), make_run()
    await runs.queue_run(session.session_id, run, create=session)
    # arq finished the job without starting the run (its worker failed it, or it expired).
    await queue.zrem(store.keys.queue, run.run_id)
    await queue.delete(store.keys.arq_job(run.run_id))
    await _make_due(store, queue)  # the intent its queuer left, kept for as long as the run waits
    await _reaper(runs)._requeue_expired()
    assert await _queued_jobs(store, queue) == [run.run_id]
    await _make_due(store, queue)
    await _reaper(runs)._requeue_expired()  # looked at again: queued, nothing to do
    assert await _queued_jobs(store, queue) == [run.run_id]
    assert await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1") is not None
    await _make_due(store, queue)
    await _reaper(runs)._requeue_expired()  # started: the intent is done with
    assert [m for m in await queue.zrange(store.keys.lease_checks, 0, -1) if b" " in m] == []


async def test_a_worker_that_dies_after_ending_its_run_loses_no_run_in_line(
    store: SessionStore, runs: AllWrites, queue: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id, first = await start_a_run(runs)
    second = make_run("next")
    assert (await runs.queue_run(session_id, second, multitask="enqueue")).queued is Queued.PENDING

    async def dies(*args: object) -> None:
        raise Died("the worker died here")

    with monkeypatch.context() as patch:
        patch.setattr(runs.leases, "push", dies)
        with pytest.raises(Died):
            await RunLease(runs, session_id, first.run_id, "lease-1").append(
                [delta_of(first.run_id)], ending=completion(first.run_id)
            )
    assert second.run_id not in await _queued_jobs(store, queue)
    await _make_due(store, queue)  # the entry of the first run's lease
    await _reaper(runs)._requeue_expired()
    assert second.run_id in await _queued_jobs(store, queue)
    started = await runs.start_run(session_id, second.run_id, second.run_id, token="lease-2")
    assert started is not None and started.run.run_id == second.run_id


async def test_a_run_whose_lease_ran_out_is_requeued_on_the_queue_apart(
    store: SessionStore, runs: AllWrites, sessions: RedisCluster, queue: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    await RunLease(runs, session_id, run.run_id, "lease-1").append([delta_of(run.run_id)])
    reaper = _reaper(runs)
    await _make_due(store, queue)
    await reaper._requeue_expired()  # renewed: the entry moves to the lease's deadline
    assert await runs.leases.due(0, 10) == []
    await sessions.hset(store.keys.session(session_id).meta, "lease_until", "0")  # type: ignore[misc]
    await _make_due(store, queue)
    assert await reaper._requeue_expired() == 1
    [job_id] = await _queued_jobs(store, queue)
    assert job_id.startswith(run.run_id + ".")
    taken = await runs.start_run(session_id, run.run_id, job_id, token="lease-2")
    assert taken is not None and taken.run.attempt == 2
    assert await _queued_jobs(store, queue) == []


async def test_a_reaper_keeps_an_entry_a_worker_wrote_while_it_looked(
    store: SessionStore, runs: AllWrites, queue: Redis
) -> None:
    session, run = make_session(), make_run()
    await runs.queue_run(session.session_id, run, create=session)
    await queue.zadd(store.keys.lease_checks, {session.session_id: 0})  # an old entry, due
    [entry] = [e for e in await runs.leases.due(0, 10) if e.member == session.session_id]
    assert (await runs.look(session.session_id)).outcome is Requeue.PUSHED  # no lease yet
    await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1")  # writes the entry first
    await runs.leases.settle(entry)  # the reaper, done with what it read
    assert await queue.zscore(store.keys.lease_checks, session.session_id) not in (None, 0)


async def _never(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    raise AssertionError("the tests claim jobs with BatchedPickup.claim: nothing runs them")


@pytest.fixture
async def pickups(cluster_queue_url: str, settings: Settings) -> AsyncIterator[Any]:
    """Makes workers' pickups on the queue's Redis, as `tokentail worker` makes its own (worker/process/main.py):
    their claims watch the runs' sessions, and their starts' takes wait for their next call there."""
    pools = []

    async def pickup(runs: AllWrites) -> BatchedPickup:
        queue_name = runs.keys.queue
        pool = await create_pool(RedisSettings.from_dsn(cluster_queue_url), default_queue_name=queue_name)
        pools.append(pool)
        made = BatchedPickup(
            functions=[func(_never, name=jobs.RUN_JOB)],
            redis_pool=pool,
            queue_name=queue_name,
            handle_signals=False,
            admission=Admission.of(settings),
            watch_ms=settings.lease_ms,
            job_serializer=jobs.serialize,
            job_deserializer=jobs.deserialize,
        )
        made.in_progress_timeout_s = settings.lease_ms / 1000
        runs.leases.pickup = made
        return made

    yield pickup
    for pool in pools:
        await pool.aclose()


async def _index(store: SessionStore, queue: Redis) -> list[str]:
    return [member.decode() for member in await queue.zrange(store.keys.lease_checks, 0, -1)]


async def _finished(pickup: BatchedPickup, job_id: str) -> None:
    """The job's finish, as arq's run_claimed sends it once the job's function returned."""
    await pickup.finish_job(job_id, True, None, 0, False, None, None)


async def _started(runs: AllWrites, pickup: BatchedPickup) -> tuple[SessionRecord, RunRecord, ClaimedJob]:
    """A new session's run, queued, its job claimed by `pickup` and the run started (lease `lease-1`)."""
    session, run = make_session(), make_run()
    await runs.queue_run(session.session_id, run, create=session)
    [job] = await pickup.claim(10, 10)
    assert await runs.start_run(session.session_id, run.run_id, job.job_id, token="lease-1") is not None
    return session, run, job


async def test_a_claim_watches_its_run_in_place_of_its_intent_and_a_run_that_ended_leaves_no_entry(
    store: SessionStore, runs: AllWrites, sessions: RedisCluster, queue: Redis, pickups: Any
) -> None:
    pickup = await pickups(runs)
    session, run = make_session(), make_run()
    await runs.queue_run(session.session_id, run, create=session)
    assert await _index(store, queue) == [f"{session.session_id} {run.run_id}"]  # the gateway's intent
    [job] = await pickup.claim(10, 10)
    assert job.job_id == run.run_id and job.watched == session.session_id
    # The claim's watch, due a lease on, in place of the intent: the run's lease is covered from now on.
    [(watch, due)] = await queue.zrange(store.keys.lease_checks, 0, -1, withscores=True)
    assert watch.decode() == session.session_id and due > 1000 * (await queue.time())[0]
    started = await runs.start_run(session.session_id, run.run_id, job.job_id, token="lease-1")
    assert started is not None
    assert await queue.zrange(store.keys.lease_checks, 0, -1, withscores=True) == [
        (watch, due)
    ]  # (the start wrote none)
    assert await _queued_jobs(store, queue) == [run.run_id]  # its take waits for the worker's next call
    await pickup.claim(10, 10)  # (a poll: nothing due)
    assert await _queued_jobs(store, queue) == []
    await RunLease(runs, session.session_id, run.run_id, "lease-1").append([], ending=completion(run.run_id))
    runs.leases.ended(job.job_id)  # (run_agent, its end written)
    await _finished(pickup, job.job_id)
    assert await _index(store, queue) == []  # no reaper looks at this start or its end
    assert not await queue.exists(constants.job_key_prefix + job.job_id)


async def test_a_worker_that_dies_between_its_claim_and_its_run_s_start_loses_no_run(
    store: SessionStore, runs: AllWrites, queue: Redis, pickups: Any
) -> None:
    dying = await pickups(runs)
    session, run = make_session(), make_run()
    await runs.queue_run(session.session_id, run, create=session)
    [job] = await dying.claim(10, 10)
    # It died here: its claim's watch names the session, its queuer's intent is gone.
    assert await _index(store, queue) == [session.session_id]
    await _make_due(store, queue)
    await _reaper(runs)._requeue_expired()  # no lease: its job is owed and queued (a no-op), looked at again
    assert await _queued_jobs(store, queue) == [run.run_id]
    assert await _index(store, queue) == [session.session_id] and await runs.leases.due(0, 10) == []
    await queue.delete(constants.in_progress_key_prefix + job.job_id)  # its in-progress mark lapses
    other = AllWrites(runs.redis, runs.settings, queue=queue)
    [again] = await (await pickups(other)).claim(10, 10)
    assert again.job_id == run.run_id
    assert await other.start_run(session.session_id, run.run_id, again.job_id, token="lease-2") is not None


async def test_a_worker_that_dies_between_its_run_s_start_and_its_take_loses_no_run(
    store: SessionStore, runs: AllWrites, sessions: RedisCluster, queue: Redis, pickups: Any
) -> None:
    dying = await pickups(runs)
    session, run, job = await _started(runs, dying)
    # It died here, its take not sent: its job is still queued, and picked again once its mark lapses...
    await queue.delete(constants.in_progress_key_prefix + job.job_id)
    other = AllWrites(runs.redis, runs.settings, queue=queue)
    [again] = await (await pickups(other)).claim(10, 10)
    assert await other.start_run(session.session_id, run.run_id, again.job_id, token="lease-2") is None  # held
    # ...and its lease is watched: once it runs out, a reaper queues the run for a takeover.
    assert session.session_id in await _index(store, queue)
    await sessions.hset(store.keys.session(session.session_id).meta, "lease_until", "0")  # type: ignore[misc]
    await _make_due(store, queue)
    assert await _reaper(runs)._requeue_expired() == 1
    takeover = next(job_id for job_id in await _queued_jobs(store, queue) if job_id != run.run_id)
    taken = await other.start_run(session.session_id, run.run_id, takeover, token="lease-3", takeover="restart")
    assert taken is not None and taken.run.attempt == 2


async def test_a_worker_that_dies_between_its_run_s_end_and_its_job_s_finish_loses_no_run_in_line(
    store: SessionStore, runs: AllWrites, queue: Redis, pickups: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pickup = await pickups(runs)
    session, first, job = await _started(runs, pickup)
    second = make_run("next")
    assert (await runs.queue_run(session.session_id, second, multitask="enqueue")).queued is Queued.PENDING

    async def dies(*args: object) -> None:
        raise Died("the worker died here")

    with monkeypatch.context() as patch:  # its end written, the next run's job in the outbox, not pushed
        patch.setattr(runs.leases, "push", dies)
        with pytest.raises(Died):
            await RunLease(runs, session.session_id, first.run_id, "lease-1").append(
                [], ending=completion(first.run_id)
            )
    assert second.run_id not in await _queued_jobs(store, queue)
    await queue.zrem(store.keys.lease_checks, f"{session.session_id} {second.run_id}")  # (looked at already)
    assert await _index(store, queue) == [session.session_id]  # never finished: its watch stays
    await _make_due(store, queue)
    await _reaper(runs)._requeue_expired()
    assert second.run_id in await _queued_jobs(store, queue)


async def test_a_run_that_waits_for_an_answer_keeps_its_watch_past_its_job_s_finish(
    store: SessionStore, runs: AllWrites, queue: Redis, pickups: Any
) -> None:
    pickup = await pickups(runs)
    session, run, job = await _started(runs, pickup)
    question = Question(
        input_id="q1", kind="text", prompt="Sure?", answer_schema={"type": "string"}, expires_at=time.time() + 60
    )
    asked = await RunLease(runs, session.session_id, run.run_id, "lease-1").ask([question], [question])
    assert asked is Asked.WAITING
    await _finished(pickup, job.job_id)  # (run_agent tells no end: the run waits)
    assert await _index(store, queue) == [session.session_id]  # a reaper ends the question past its deadline
    await _make_due(store, queue)
    await _reaper(runs)._requeue_expired()
    assert await _index(store, queue) == [session.session_id]  # looked at again at the deadline


async def test_a_run_that_ran_past_a_lease_leaves_its_watch_to_the_reaper_that_moved_it(
    store: SessionStore, sessions: RedisCluster, settings: Settings, queue: Redis, pickups: Any
) -> None:
    # A long lease: the reaper below must find it alive (a loaded CI box once took the fixtures' 3 s
    # between the run's start and the reaper's look, which then took the run over instead).
    runs = AllWrites(sessions, settings.model_copy(update={"lease_ms": 60_000}), queue=queue)
    pickup = await pickups(runs)
    session, run, job = await _started(runs, pickup)
    await _make_due(store, queue)
    await _reaper(runs)._requeue_expired()  # renewed: moved to the lease's deadline
    await RunLease(runs, session.session_id, run.run_id, "lease-1").append([], ending=completion(run.run_id))
    runs.leases.ended(job.job_id)
    await _finished(pickup, job.job_id)
    assert await _index(store, queue) == [session.session_id]  # not as its claim wrote it: left
    await _make_due(store, queue)
    await _reaper(runs)._requeue_expired()  # nothing to take over: dropped
    assert await _index(store, queue) == []


async def test_a_run_s_end_drops_its_own_watch_and_not_the_next_run_s(
    store: SessionStore, runs: AllWrites, queue: Redis, pickups: Any
) -> None:
    pickup = await pickups(runs)
    session, first, job = await _started(runs, pickup)
    second = make_run("next")
    await runs.queue_run(session.session_id, second, multitask="enqueue")
    await RunLease(runs, session.session_id, first.run_id, "lease-1").append([], ending=completion(first.run_id))
    assert second.run_id in await _queued_jobs(store, queue)  # pushed from the end's reply
    other = AllWrites(runs.redis, runs.settings, queue=queue)
    [next_job] = await (await pickups(other)).claim(10, 10)  # claimed before the first job's finish
    runs.leases.ended(job.job_id)
    await _finished(pickup, job.job_id)
    assert next_job.watched_at != job.watched_at
    assert await _index(store, queue) == [session.session_id]  # the next run's, as its claim wrote it
    assert await queue.zscore(store.keys.lease_checks, session.session_id) == float(next_job.watched_at or 0)


@DIRECT
async def test_followers_go_on_when_their_session_s_slot_moves_to_another_primary(
    store: SessionStore,
    runs: AllWrites,
    sessions: RedisCluster,
    settings: Settings,
    cluster: LocalCluster,
    direct: bool,
) -> None:
    hub = StreamHub(settings, read_connections=3)
    await hub.start()
    try:
        session_id, run = await start_a_run(runs)
        followers = [Follower(hub, session_id, direct=direct) for _ in range(3)]
        await _live(*followers)
        await _append(runs, session_id, run.run_id, 5)
        key = store.keys.session(session_id).events
        before = hub._channels[key.encode()].link
        reads = cast(ClusterRoundTrips, hub.store.round_trips)  # the followers' catch-up reads went on them
        opened = {name: trips._connection for name, trips in reads._nodes.items()}
        client = cast(RedisCluster, hub._redis)
        nodes = dict(client.nodes_manager.nodes_cache)
        new_primary = move_slot(cluster, sessions.keyslot(key))

        def moved() -> bool:  # the old primary unsubscribed the hub; it follows the new one
            link = hub._channels[key.encode()].link
            return link is not before and link is not None and bool(link.connection)

        await eventually(moved, interval=0.02)
        link = hub._channels[key.encode()].link
        assert link is not None and link.address == new_primary
        # The hub read the slot map again (its client's nodes made anew) through the round trips, which
        # kept their connections.
        assert opened and all(
            reads._nodes[name]._connection is connection and connection is not None and connection.is_connected
            for name, connection in opened.items()
        )
        assert all(node is not nodes.get(name) for name, node in client.nodes_manager.nodes_cache.items())
        for _ in range(10):
            last = await _append(runs, session_id, run.run_id)
        for follower in followers:
            await follower.until(last)
            assert follower.seqs == list(range(1, last + 1))  # no id dropped or repeated across the move
            assert follower.direct_writes > 0 if direct else follower.direct_writes == 0
            await follower.close()
    finally:
        await hub.aclose()


async def test_questions_on_a_cluster_are_answered_and_expire_through_the_queue_apart(
    start_gateway: Any, start_worker: Any, cluster: LocalCluster, settings: Settings
) -> None:
    agents = {"approve": "tests.agents.asking_agent:approval", "expiring": "tests.agents.asking_agent:expiring"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents, lease_ms=1000)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(20.0)) as client:
        asked = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()
        expiring = (await client.post("/v1/sessions", json={"input": "wait", "agent": "expiring"})).json()

        async def question() -> dict[str, Any]:
            pending: dict[str, Any] | None = (await client.get(f"/v1/sessions/{asked['session_id']}")).json()[
                "pending_input"
            ]
            assert pending is not None
            return pending

        pending = await eventually(question, what="the question")
        url = f"/v1/sessions/{asked['session_id']}/runs/{asked['run_id']}/input"
        answer = {"input_id": pending["input_id"], "answer": {"approved": True}}
        assert (await client.post(url, json=answer)).status_code == 202  # its job goes through the outbox
        answered, expired = await asyncio.gather(
            read_events(client, asked["events_url"]), read_events(client, expiring["events_url"])
        )
    assert answered.events[-1][2]["output"] == "Checking. Done: deleted."
    assert expired.events[-1][1] == "run.failed" and expired.events[-1][2]["error"]["type"] == "input_expired"


async def test_webhooks_of_sessions_on_every_shard_are_delivered_through_the_index_beside_the_queue(
    start_gateway: Any, start_worker: Any, queue: Redis, settings: Settings
) -> None:
    async with Receiver() as receiver:
        hooks = {"webhook_allowed_urls": [receiver.url]}
        gateway = await start_gateway(**hooks)
        await start_worker(**hooks)
        async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(20.0)) as client:
            await client.put("/v1/webhook", json={"url": receiver.url + "/t"})
            created = [
                (await client.post("/v1/sessions", json={"input": f"q {i}", "params": {"tokens": 3}})).json()
                for i in range(9)
            ]
            await eventually(lambda: len(receiver.accepted()) == len(created), within=20, what="every webhook")
            await eventually(lambda: _index_empty(queue, settings), within=10, what="the webhooks index emptied")
    assert sorted(json.loads(d.body)["session_id"] for d in receiver.deliveries) == sorted(
        c["session_id"] for c in created
    )


async def _index_empty(queue: Redis, settings: Settings) -> bool:
    return not await queue.zcard(f"{settings.key_prefix}:webhook-checks")


async def test_a_worker_that_dies_right_after_ending_its_run_loses_no_webhook(
    runs: AllWrites, sessions: RedisCluster, queue: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Receiver() as receiver:
        hooked = settings.model_copy(update={"webhook_allowed_urls": [receiver.url]})
        runs = AllWrites(sessions, hooked, queue=queue)
        session, run = make_session(), make_run()
        session.webhook = receiver.url + "/s"
        await runs.queue_run(session.session_id, run, create=session)
        assert await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1") is not None

        async def dies(*args: object) -> None:
            raise Died("the worker died here")

        with monkeypatch.context() as patch:
            patch.setattr(runs.webhooks, "due_now", dies)
            with pytest.raises(Died):
                await RunLease(runs, session.session_id, run.run_id, "lease-1").append(
                    [], ending=completion(run.run_id)
                )
        # The session is in the index, due after a grace: as if the grace had passed, a deliverer posts it.
        [(member, _)] = await queue.zrange(runs.keys.webhook_checks, 0, -1, withscores=True)
        assert member.decode() == session.session_id
        await queue.zadd(runs.keys.webhook_checks, {session.session_id: 0})
        deliverer = WebhookDeliverer(sessions, runs.webhooks, hooked)
        delivering = asyncio.create_task(deliverer.run_forever())
        try:
            await eventually(lambda: len(receiver.accepted()) == 1, what="the webhook")
        finally:
            delivering.cancel()
            await deliverer.close()
    assert json.loads(receiver.accepted()[0].body)["type"] == "run.completed"


async def test_child_runs_on_a_cluster_wake_their_parent_through_the_queue_apart_and_go_on_in_a_fork(
    start_gateway: Any, start_worker: Any, cluster: LocalCluster, settings: Settings
) -> None:
    agents = {"parent": "tests.agents.spawning_agents:two_children", "echo": "tests.agents.spawning_agents:echo"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(20.0)) as client:
        made = (await client.post("/v1/sessions", json={"input": "hi", "agent": "parent"})).json()
        received = await read_events(client, made["events_url"])
        # Time travel where the children were going: each goes on in its lane in the fork (its job pushed from
        # its lane's outbox to the queue apart), and the parent finds them and waits.
        at = [seq for seq, kind, _ in received.events if kind == "run.spawned"][-1]
        forked = await client.post(f"/v1/sessions/{made['session_id']}/fork", json={"at": at})
        assert forked.status_code == 201, forked.text
        fork = await read_events(client, f"/v1/sessions/{forked.json()['session_id']}/events")
    assert received.ids == list(range(1, len(received.ids) + 1))
    assert received.events[-1][2]["output"] == "Asking two. Got echo[a] and echo[b]."
    assert fork.events[:at] == received.events[:at]
    assert [kind for _, kind, _ in fork.events[at:]].count("run.spawned") == 0  # found going, not spawned again
    assert fork.events[-1][2]["output"] == "Asking two. Got echo[a] and echo[b]."
