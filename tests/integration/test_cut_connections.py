"""Connections to Redis cut at the worst instants (tests/servers/redis_faults.py `FaultyLink`): a worker's as it
claims a run (whose reply carries the session's runs, the run's first read), and a share of all its
replies lost; a gateway's as it
queues a run. Nothing is stranded, failed or done twice: every call a run depends on rides out the
outage (shared/connections/outage.py), a run left queued without its job gets it again from a reaper
(worker/process/reaper.py), and a gateway finds out itself whether the run it queued was made."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis

from tests.clients.protocol_clients import Frame, NativeClient
from tests.servers.redis_faults import FaultyLink
from tests.support.sessions import completion, make_run, make_session
from tests.support.waiting import eventually, scaled
from tests.support.writes import AllWrites
from tokentail.gateway.commands import writes
from tokentail.shared.connections import outage
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.contract import Script, Topology
from tokentail.shared.store.scripts.runs import QueueRun, StartRun
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.worker.providers.scripted import scripted_tokens

# Long enough that no reaper takes a run over, nor looks at a queued one, within a test: what saves a
# run here is the worker's own call riding out the cut, not a backstop.
NO_REAPER = {"lease_ms": 120_000}
TOKENS = 30


@pytest.fixture
async def link(redis_url: str) -> AsyncIterator[FaultyLink]:
    link = await FaultyLink(redis_url).start()
    yield link
    await link.close()


async def _loaded(redis: Redis, contract: type[Script[Any]], settings: Settings) -> bytes:
    """The sha a worker calls the script by, loaded already, so that its first call runs it."""
    sha: str = await redis.script_load(contract.lua_source(Topology.of(settings)))
    return sha.encode()


async def _queue(runs: AllWrites, text: str = "hello") -> tuple[str, RunRecord]:
    session, run = make_session(), make_run(text)
    run.params = {"tokens": TOKENS, "tokens_per_second": 0}
    await runs.queue_run(session.session_id, run, create=session)
    return session.session_id, run


async def _ended(store: SessionStore, session_id: str) -> RunRecord:
    async def ended() -> RunRecord:
        run = (await store.get_session(session_id)).runs[-1]
        assert run.status not in ("queued", "running"), f"run {run.run_id} is {run.status}"
        return run

    ended_run: RunRecord = await eventually(ended, within=30)
    return ended_run


async def _types(store: SessionStore, session_id: str) -> list[str]:
    return [event.type.decode() for event in await store.read(session_id, 0, 10_000)]


@pytest.mark.parametrize("reply_lost", [False, True], ids=["before-redis-got-it", "as-redis-answered"])
async def test_a_claim_cut_off_starts_its_run_once_all_the_same(
    reply_lost: bool,
    link: FaultyLink,
    redis: Redis,
    runs: AllWrites,
    store: SessionStore,
    settings: Settings,
    start_worker: Any,
) -> None:
    # Before: the job failed and arq finished it, the run queued for good (cut before Redis got it), or
    # taken over by a second attempt (cut as Redis answered). The session's second run: the claim's
    # reply carries the first (the conversation so far: the run's first read of its session, which
    # once failed the run when cut), read again when the claim is sent again.
    session_id, first = await _queue(runs, "first question")
    started = await runs.start_run(session_id, first.run_id, first.run_id, token="lease-0")
    assert started is not None
    await started.lease.append([], ending=completion(first.run_id, "an answer"))
    second = make_run("second question")
    second.params = {"tokens": TOKENS, "tokens_per_second": 0}
    await runs.queue_run(session_id, second)
    cut = link.cut(await _loaded(redis, StartRun, settings), reply_lost=reply_lost)
    await start_worker(redis_url=link.url, **NO_REAPER)
    await eventually(cut.done.is_set)
    ended = await _ended(store, session_id)
    assert ended.run_id == second.run_id and ended.status == "completed" and ended.attempt == 1
    types = await _types(store, session_id)
    assert types.count("run.started") == 2 and "run.retrying" not in types and "run.continued" not in types


async def test_with_a_share_of_the_worker_s_replies_lost_every_run_completes_once(
    link: FaultyLink, runs: AllWrites, store: SessionStore, start_worker: Any
) -> None:
    # Before: 6 of 24 runs failed and 1 was left queued, at 12%. A claim whose reply is lost leaves its
    # jobs marked in progress for a lease, and a run that missed its renewals is taken over: with the
    # tests' short lease (3 s), both come back soon; a client shows each run whole all the same.
    link.drop_replies(0.12)
    await start_worker(redis_url=link.url)
    queued = [await _queue(runs, f"question {i}") for i in range(24)]
    ended = await asyncio.gather(*(_ended(store, session_id) for session_id, _ in queued))
    assert link.replies_dropped > 0
    for (session_id, run), record in zip(queued, ended, strict=True):
        assert record.status == "completed", record.error
        assert record.output == "".join(scripted_tokens(run.input, TOKENS))
        client = NativeClient()
        for event in await store.read(session_id, 0, 10_000):
            client.feed(Frame(str(event.seq), event.type.decode(), event.data.decode()))
        assert client.shown().text == record.output and client.ended == "completed"
        assert (await _types(store, session_id)).count("run.completed") == 1
    link.drop_replies(0)  # the worker stops on a sound link (arq's close deletes its health check first)


async def test_a_run_that_cannot_start_keeps_its_job_until_it_can(
    link: FaultyLink,
    redis: Redis,
    runs: AllWrites,
    store: SessionStore,
    settings: Settings,
    start_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: the start's error failed the job, arq finished it, and the run stayed queued for good.
    monkeypatch.setattr(outage, "OUTAGE_SECONDS", 0.3)  # the worker gives a start up after 0.3 s
    cut = link.cut(await _loaded(redis, StartRun, settings), reply_lost=False, times=10**9)
    await start_worker(redis_url=link.url, **NO_REAPER)
    session_id, run = await _queue(runs)
    await eventually(lambda: cut.made >= 12)  # given up at least twice, and tried again each time
    assert await redis.zscore(store.keys.queue, run.run_id) is not None
    link.stop_cutting()
    ended = await _ended(store, session_id)
    assert ended.status == "completed" and ended.attempt == 1


@pytest.mark.parametrize("how", ["finished", "expired"])
async def test_a_queued_run_whose_job_arq_ended_unstarted_is_queued_again(
    how: str, redis: Redis, runs: AllWrites, store: SessionStore, start_worker: Any
) -> None:
    # Before: the run stayed queued for good, its session refusing new turns (409).
    session_id, run = await _queue(runs)
    if how == "finished":  # as finish_jobs.lua leaves a job its worker failed
        await redis.zrem(store.keys.queue, run.run_id)
    await redis.delete(store.keys.arq_job(run.run_id))  # a worker's claim finds it expired, and finishes it
    await start_worker(lease_ms=1000)  # a reaper looks at a queued run after two leases
    ended = await _ended(store, session_id)
    assert ended.status == "completed" and ended.attempt == 1


# -- the gateway's queueing -----------------------------------------------------------------------


async def test_a_run_queued_as_its_reply_is_lost_is_answered_once_made(
    link: FaultyLink, redis: Redis, store: SessionStore, settings: Settings, start_gateway: Any
) -> None:
    # Before: 503 "Redis is not reachable; try again", though the run was made (and ran): a client
    # that tried again as told ran its message twice.
    queue_sha = await _loaded(redis, QueueRun, settings)
    gateway = await start_gateway(redis_url=link.url)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(scaled(20))) as client:
        cut = link.cut(queue_sha, reply_lost=True)
        created = await client.post("/v1/sessions", json={"input": "hello", "model": "scripted"})
        assert cut.done.is_set() and created.status_code == 201, created.text
        session_id = created.json()["session_id"]
        cut = link.cut(queue_sha, reply_lost=True)
        more = await client.post(f"/v1/sessions/{session_id}/runs", json={"input": "more", "multitask": "enqueue"})
        assert cut.done.is_set() and more.status_code == 202, more.text
    runs = (await store.get_session(session_id)).runs
    assert [run.run_id for run in runs] == [created.json()["run_id"], more.json()["run_id"]]
    assert (await _types(store, session_id)).count("run.queued") == 2


async def test_a_run_whose_queueing_redis_never_answers_is_named_in_the_503(
    link: FaultyLink,
    redis: Redis,
    store: SessionStore,
    settings: Settings,
    start_gateway: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writes, "QUEUE_OUTAGE_SECONDS", 0.5)
    queue_sha = await _loaded(redis, QueueRun, settings)
    gateway = await start_gateway(redis_url=link.url)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(scaled(20))) as client:
        link.cut(queue_sha, reply_lost=True)  # it ran, and its reply was lost...
        link.cut(queue_sha, reply_lost=False, times=10**9)  # ...and every try after it is cut
        refused = await client.post("/v1/sessions", json={"input": "hello", "model": "scripted"})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error["type"] == "redis_unavailable" and error["session_id"] in error["message"]
    # What the client needs to find out: the run was made, under the ids the answer named.
    assert [run.run_id for run in (await store.get_session(error["session_id"])).runs] == [error["run_id"]]
