"""The batched pickup (worker/process/arq_shell.py) against a real redis-server: a plain arq client sees of its
jobs what it sees of arq's own worker's, and a poll's claims and its jobs' finishes are joined."""

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
from arq import constants
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus
from arq.worker import Retry, Worker, func

from tests.support.waiting import eventually, scaled
from tokentail.shared.store.scripts.contract import Script
from tokentail.shared.store.scripts.pickup import ClaimJobs, FinishJobs
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.worker.process import arq_shell
from tokentail.worker.process.arq_shell import BatchedPickup

WORKERS = [Worker, BatchedPickup]
W = TypeVar("W", bound=Worker)


@pytest.fixture
def queue() -> str:
    return f"tt-test-pickup-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def pool(redis_url: str, queue: str) -> AsyncIterator[ArqRedis]:
    """A plain arq client; its connections may take a loaded machine's time to open (arq's default: 1 s)."""
    settings = dataclasses.replace(RedisSettings.from_dsn(redis_url), conn_timeout=int(scaled(10)))
    pool = await create_pool(settings, default_queue_name=queue)
    yield pool
    await pool.aclose()


def _worker(kind: type[W], pool: ArqRedis, functions: list[Any], **options: Any) -> W:
    """arq's test worker: burst, no poll delay, drained with `await worker.main()`."""
    return kind(
        functions=functions,
        redis_pool=pool,
        queue_name=pool.default_queue_name,
        burst=True,
        poll_delay=0,
        handle_signals=False,
        **options,
    )


async def _keys_of(pool: ArqRedis, queue: str, job_id: str) -> dict[str, Any]:
    """What Redis holds of a job under arq's keys (TTLs to 10 s); not the result's bytes (its times differ)."""
    return {
        "job": await pool.exists(constants.job_key_prefix + job_id),
        "in_progress_ttl_s": round(await pool.pttl(constants.in_progress_key_prefix + job_id) / 1000, -1),
        "retry": await pool.get(constants.retry_key_prefix + job_id),
        "queued": await pool.zscore(queue, job_id) is not None,
        "result_ttl_s": round(await pool.pttl(constants.result_key_prefix + job_id) / 1000, -1),
    }


async def _seen_by_a_plain_client(kind: type[Worker], pool: ArqRedis, queue: str, keep_result: int) -> Any:
    seen: dict[str, Any] = {}

    async def double(ctx: dict[str, Any], x: int) -> int:
        job = Job(ctx["job_id"], pool, _queue_name=queue)
        seen["running"] = (await job.status(), ctx["job_try"], await _keys_of(pool, queue, ctx["job_id"]))
        return x * 2

    job = await pool.enqueue_job("double", 21, _queue_name=queue)
    assert job is not None
    queued = (await job.status(), await _keys_of(pool, queue, job.job_id))
    info = await job.info()
    assert info is not None and info.function == "double" and info.args == (21,)
    worker = _worker(kind, pool, [func(double, name="double")], keep_result=keep_result)
    await worker.main()
    ended = (await job.status(), await _keys_of(pool, queue, job.job_id))
    result = await job.result(timeout=1) if keep_result else None
    return queued, seen["running"], ended, result, (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried)


@pytest.mark.parametrize("keep_result", [0, 60], ids=["keep_result=0", "keep_result=60"])
async def test_a_plain_arq_client_sees_the_batched_pickup_s_jobs_as_arq_s_own(
    pool: ArqRedis, queue: str, keep_result: int
) -> None:
    arq_s, ours = [await _seen_by_a_plain_client(kind, pool, queue, keep_result) for kind in WORKERS]
    assert ours == arq_s
    queued, running, ended, result, _ = ours
    assert queued[0] == JobStatus.queued and running[0] == JobStatus.in_progress and running[1] == 1
    assert running[2]["retry"] == b"1" and running[2]["queued"] and running[2]["in_progress_ttl_s"] > 0
    if keep_result:
        assert ended[0] == JobStatus.complete and result == 42
    else:
        assert ended == (
            JobStatus.not_found,
            {"job": 0, "in_progress_ttl_s": -0.0, "retry": None, "queued": False, "result_ttl_s": -0.0},
        )


async def _retried(kind: type[Worker], pool: ArqRedis, queue: str) -> Any:
    tries: list[int] = []

    async def flaky(ctx: dict[str, Any]) -> str:
        tries.append(ctx["job_try"])
        if len(tries) < 3:
            raise Retry(defer=0.05)
        return "done"

    job = await pool.enqueue_job("flaky", _queue_name=queue)
    assert job is not None
    worker = _worker(kind, pool, [func(flaky, name="flaky")], keep_result=60)
    await worker.main()
    return tries, await job.status(), await job.result(timeout=1), worker.jobs_retried


async def test_a_retried_job_counts_its_tries_and_comes_back_as_with_arq(pool: ArqRedis, queue: str) -> None:
    arq_s, ours = [await _retried(kind, pool, queue) for kind in WORKERS]
    assert ours == arq_s == ([1, 2, 3], JobStatus.complete, "done", 2)


async def _refused(kind: type[Worker], pool: ArqRedis, queue: str) -> Any:
    """A job past its tries, a job whose function is unknown, and one aborted before it started."""
    ran: list[str] = []

    async def work(ctx: dict[str, Any]) -> None:
        ran.append(ctx["job_id"])

    worn = await pool.enqueue_job("work", _queue_name=queue)
    unknown = await pool.enqueue_job("nobody", _queue_name=queue)
    aborted = await pool.enqueue_job("work", _queue_name=queue)
    assert worn is not None and unknown is not None and aborted is not None
    await pool.set(constants.retry_key_prefix + worn.job_id, 5)  # its next try is the 6th
    await pool.zadd(constants.abort_jobs_ss, {aborted.job_id: 0})  # as Job.abort() asks
    worker = _worker(kind, pool, [func(work, name="work", max_tries=5)], keep_result=60, allow_abort_jobs=True)
    await worker.main()
    outcomes = []
    for job in (worn, unknown, aborted):
        info = await job.result_info()
        assert info is not None
        outcomes.append((await job.status(), info.success, repr(info.result), info.job_try))
    return ran, outcomes, await pool.zscore(constants.abort_jobs_ss, aborted.job_id), worker.jobs_failed


async def test_jobs_refused_before_they_run_end_as_with_arq(pool: ArqRedis, queue: str) -> None:
    arq_s, ours = [await _refused(kind, pool, queue) for kind in WORKERS]
    assert ours == arq_s
    ran, outcomes, abort_left, failed = ours
    assert ran == [] and abort_left is None and failed == 3
    assert [outcome[:2] for outcome in outcomes] == [(JobStatus.complete, False)] * 3


async def test_arq_s_own_worker_and_the_batched_pickup_never_run_a_job_twice(pool: ArqRedis, queue: str) -> None:
    ran: list[str] = []

    async def work(ctx: dict[str, Any]) -> None:
        ran.append(ctx["job_id"])
        await asyncio.sleep(0.01)

    jobs = [await pool.enqueue_job("work", _queue_name=queue) for _ in range(40)]
    workers: list[Worker] = [
        _worker(kind, pool, [func(work, name="work")], keep_result=0, max_jobs=7) for kind in WORKERS
    ]
    await asyncio.gather(*(worker.main() for worker in workers))
    assert sorted(ran) == sorted(job.job_id for job in jobs if job is not None)


class _Calls:
    """How many calls of each script the batched pickup makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.claims: list[int] = []  # the jobs each claim took
        self.finishes: list[int] = []  # the jobs each finish ended
        call = ScriptRunner.__call__

        async def counted(runner: ScriptRunner, script: Script[Any]) -> Any:
            reply = await call(runner, script)
            if isinstance(script, ClaimJobs):
                self.claims.append(len(reply.jobs))
            elif isinstance(script, FinishJobs):
                self.finishes.append(len(script.finishes) // 6)
            return reply

        monkeypatch.setattr(ScriptRunner, "__call__", counted)


async def test_one_poll_claims_as_many_jobs_as_slots_in_claims_of_a_bounded_size(
    pool: ArqRedis, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arq_shell, "CLAIM_MOST", 3)
    calls = _Calls(monkeypatch)
    release = asyncio.Event()

    async def wait(ctx: dict[str, Any]) -> None:
        await release.wait()

    for _ in range(12):
        await pool.enqueue_job("wait", _queue_name=queue)
    worker = _worker(BatchedPickup, pool, [func(wait, name="wait")], keep_result=0, max_jobs=10)
    await worker._poll_iteration()
    assert calls.claims == [3, 3, 3, 1] and worker.job_counter == 10 and len(worker.tasks) == 10
    assert worker.sem._value == 1  # one slot each, as arq takes them (its semaphore holds max_jobs + 1)
    assert worker.short_of_slots  # two jobs wait for a slot: one that frees polls again
    release.set()
    await worker.main()
    assert await pool.zcard(queue) == 0 and worker.jobs_complete == 12 and worker.sem._value == 11
    assert not worker.short_of_slots


async def test_the_finishes_of_jobs_ending_together_go_in_one_call(
    pool: ArqRedis, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _Calls(monkeypatch)
    release = asyncio.Event()

    async def wait(ctx: dict[str, Any]) -> None:
        await release.wait()

    for _ in range(20):
        await pool.enqueue_job("wait", _queue_name=queue)
    worker = _worker(BatchedPickup, pool, [func(wait, name="wait")], keep_result=0, max_jobs=20)
    main = asyncio.create_task(worker.main())
    await eventually(lambda: worker.job_counter == 20)
    release.set()
    await main
    assert sum(calls.finishes) == 20 and len(calls.finishes) <= 2  # the first alone, the rest while it was out
    assert await pool.zcard(queue) == 0 and worker.jobs_complete == 20
