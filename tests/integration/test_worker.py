"""The worker against a real redis-server: pickup, duplicates, leases, coalescing."""

import asyncio
import gc
import json
import time
from typing import Any

import pytest
from arq.worker import Worker
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from tests.support.waiting import eventually, scaled
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.contract import Script
from tokentail.shared.store.scripts.pickup import ClaimJobs
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord
from tokentail.worker.providers import Providers
from tokentail.worker.run.context import RunContext
from tokentail.worker.run.job import run_agent
from tokentail.worker.running import RunningRuns
from tokentail.worker.writes.appends import AppendTicks
from tokentail.worker.writes.lease import LeaseKeeper
from tokentail.worker.writes.run_writes import RunLease
from tokentail.worker.writes.writer import EventWriter


async def _queue(runs: AllWrites, question: str = "hello", **params: Any) -> tuple[str, str]:
    session = SessionRecord(session_id=new_session_id(), created_at=time.time(), model="scripted")
    run = RunRecord(run_id=new_run_id(), input=question, model="scripted", params=params)
    await runs.queue_run(session.session_id, run, create=session)
    return session.session_id, run.run_id


def _job_context(store: SessionStore, settings: Settings, job_id: str) -> dict[str, Any]:
    """What the worker's startup and arq put in a job's context."""
    running = RunningRuns()
    return {
        "store": store,
        "runs": AllWrites(store.redis, settings),
        "settings": settings,
        "providers": Providers(settings),
        "running": running,
        "job_id": job_id,
        "appends": AppendTicks(store.redis, settings),
    }


async def _wait_for_status(store: SessionStore, session_id: str, status: str, within: float = 10.0) -> None:
    async def reached() -> None:
        assert (await store.get_session(session_id)).runs[-1].status == status

    await eventually(reached, within=within)


async def test_a_wake_up_starts_the_job_without_waiting_for_the_poll(
    store: SessionStore, runs: AllWrites, redis: Redis, start_worker: Any
) -> None:
    # The timed poll is 60 s here: only the wake-up can start the run within the test's timeout.
    await start_worker(poll_interval_seconds=60)

    async def idle() -> bool:
        # The worker listens, and its first poll (which the subscription itself wakes) has found the
        # queue empty and recorded arq's health check: it is now idle for 60 s.
        listening = (await redis.pubsub_numsub(store.keys.wake_channel))[0][1] >= 1
        return listening and bool(await redis.exists(f"{store.keys.queue}:health-check"))

    await eventually(idle)
    session_id, _ = await _queue(runs, tokens=3, tokens_per_second=0)
    await _wait_for_status(store, session_id, "completed", within=10)


async def test_a_finished_run_frees_its_slot_for_the_next_job_at_once(
    store: SessionStore, runs: AllWrites, start_worker: Any
) -> None:
    await start_worker(poll_interval_seconds=60, worker_concurrency=1)
    first, _ = await _queue(runs, tokens=20, tokens_per_second=100)
    second, _ = await _queue(runs, tokens=3, tokens_per_second=0)  # waits: the only slot is busy
    await _wait_for_status(store, first, "completed")
    await _wait_for_status(store, second, "completed", within=10)


@pytest.mark.parametrize("question", ["hello", "What is 12 * 7?"])  # an answer, and one with a tool call
async def test_a_finished_run_leaves_no_cycle_for_the_collector(
    store: SessionStore, runs: AllWrites, settings: Any, question: str
) -> None:
    # A run's state (its context, writer, journal, children, lease keeper...) must be freed by reference
    # counting as the run ends: held in a cycle, it waited for a collection of the oldest objects, which
    # at 2,000 runs a worker stopped its loop for 1.8 s. With the collector off, nothing of it is left.
    session_id, run_id = await _queue(runs, tokens=20, tokens_per_second=0)
    ctx = _job_context(store, settings, run_id)
    await run_agent(ctx, session_id, run_id)  # a first run: what is made once (caches, pools) is made
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            session_id, run_id = await _queue(runs, question, tokens=20, tokens_per_second=0)
            await run_agent({**ctx, "job_id": run_id}, session_id, run_id)
            assert (await store.get_session(session_id)).runs[-1].status == "completed"

        def none_left() -> None:  # (a writer's last tick may still hold it a few milliseconds)
            left = [type(o).__name__ for o in gc.get_objects() if isinstance(o, (EventWriter, RunContext, LeaseKeeper))]
            assert left == []

        await eventually(none_left)
    finally:
        gc.enable()


async def test_a_duplicate_delivery_of_a_job_changes_nothing(
    store: SessionStore, runs: AllWrites, settings: Any
) -> None:
    session_id, run_id = await _queue(runs, tokens=5, tokens_per_second=0)
    ctx = _job_context(store, settings, run_id)
    await asyncio.gather(run_agent(ctx, session_id, run_id), run_agent(ctx, session_id, run_id))
    await run_agent(ctx, session_id, run_id)
    events = await store.read(session_id, 0, 100)
    assert [e.type for e in events].count(b"run.started") == 1
    assert [e.type for e in events].count(b"run.completed") == 1


async def test_a_run_that_loses_its_lease_stops_writing(
    store: SessionStore, runs: AllWrites, settings: Any, redis: Redis
) -> None:
    session_id, run_id = await _queue(runs, tokens=10_000, tokens_per_second=200)
    ctx = _job_context(store, settings.model_copy(update={"lease_ms": 600}), run_id)
    task = asyncio.create_task(run_agent(ctx, session_id, run_id))
    await _wait_for_status(store, session_id, "running")
    await redis.set(store.keys.session(session_id).lease, "another-worker")  # taken over elsewhere
    await asyncio.wait_for(task, scaled(5))  # stops by itself: renewal fails or the next append is fenced
    seq_after, _ = await store.stream_position(session_id)
    await asyncio.sleep(0.1)
    assert (await store.stream_position(session_id))[0] == seq_after
    types = [e.type for e in await store.read(session_id, 0, 100_000)]
    assert b"run.completed" not in types and b"run.failed" not in types


async def test_the_flush_window_bounds_how_often_a_run_appends(
    store: SessionStore, runs: AllWrites, settings: Any
) -> None:
    # The first token goes at once, then at most one append per window: fewer deltas than tokens
    # however fast or slow Redis answers (a slow one only joins more tokens per append).
    window = 0.05
    session_id, run_id = await _queue(runs, tokens=100, tokens_per_second=200)
    ctx = _job_context(store, settings.model_copy(update={"flush_interval_ms": int(window * 1000)}), run_id)
    started = time.monotonic()
    await run_agent(ctx, session_id, run_id)
    elapsed = time.monotonic() - started
    events = await store.read(session_id, 0, 1000)
    deltas = [json.loads(e.data)["text"] for e in events if e.type == b"message.delta"]
    assert len(deltas) <= 2 + elapsed / window < 100
    assert events[-1].type == b"run.completed" and "".join(deltas) == json.loads(events[-1].data)["output"]


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        redis_errors.ReadOnlyError("You can't write against a read only replica."),
        redis_errors.ResponseError("BUSY Redis is busy running a script."),
        redis_errors.ResponseError("ERR user_script:1: Script attempted to access nonexistent global variable"),
    ],
    ids=["full", "read-only", "busy", "script-error"],
)
async def test_a_redis_error_reply_in_the_poll_loop_does_not_end_the_worker(
    store: SessionStore, runs: AllWrites, start_worker: Any, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    # arq's poll re-raises what a job's task raised, and records its health with a write: a full
    # or read-only Redis fails it. arq's own loop would let that end the process.
    failures = 2
    heart_beat = Worker.heart_beat

    async def failing_heart_beat(self: Worker) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise error
        await heart_beat(self)

    monkeypatch.setattr(Worker, "heart_beat", failing_heart_beat)
    worker = await start_worker()
    await eventually(lambda: failures == 0)
    session_id, _ = await _queue(runs, tokens=3, tokens_per_second=0)
    await _wait_for_status(store, session_id, "completed")
    assert worker.main_task is not None and not worker.main_task.done()


async def test_a_run_whose_worker_dies_between_pickup_and_start_is_picked_again_within_a_lease(
    store: SessionStore, runs: AllWrites, redis: Redis, start_worker: Any, settings: Settings
) -> None:
    picked = asyncio.Event()

    async def die_after_pickup(ctx: dict[str, Any]) -> None:
        picked.set()
        await asyncio.Event().wait()  # as good as dead: arq marked the job in progress, no run started

    await start_worker(worker_concurrency=1, arq_options={"on_job_start": die_after_pickup})  # no slot to pick again
    session_id, run_id = await _queue(runs, tokens=3, tokens_per_second=0)
    await asyncio.wait_for(picked.wait(), scaled(10))
    mark = await redis.pttl(f"arq:in-progress:{run_id}")
    assert 0 < mark <= settings.lease_ms  # not job_timeout + 10 s (31 minutes)
    await start_worker()
    await _wait_for_status(store, session_id, "completed", within=settings.lease_ms / 1000 + 5)
    events = await store.read(session_id, 0, 100)
    assert [e.type for e in events].count(b"run.started") == 1 and events[-1].type == b"run.completed"


async def test_closing_a_worker_waits_for_its_main_task_before_arq_closes_the_pool(
    start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # arq's close() closes the pool at once; with the main task still unwinding (a claim in its
    # poll), that left an unclosed pipeline behind: a ResourceWarning, failing a test now and then.
    main_done_when_arq_closed: list[bool] = []
    close = Worker.close

    async def recording_close(self: Worker) -> None:
        main_done_when_arq_closed.append(self.main_task is not None and self.main_task.done())
        await close(self)

    monkeypatch.setattr(Worker, "close", recording_close)
    worker = await start_worker()
    await eventually(lambda: worker.reaper is not None)  # its poll loop runs
    await worker.close()
    assert main_done_when_arq_closed == [True]


async def test_a_connection_lost_while_claiming_a_job_costs_the_worker_no_slot(
    store: SessionStore, runs: AllWrites, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # arq takes a slot before the WATCH/MULTI that claims a job, and gives it back only on the errors
    # it expects: each connection lost mid-claim would shrink the worker by one slot, for good. The
    # claim is now one script (worker/process/arq_shell.py), which takes the slots of the jobs it claimed only
    # once it is back.
    failures = 5
    call = ScriptRunner.__call__

    async def flaky_claim(self: ScriptRunner, script: Script[Any]) -> Any:
        nonlocal failures
        if failures and isinstance(script, ClaimJobs):
            failures -= 1
            raise redis_errors.ConnectionError("Connection reset by peer")
        return await call(self, script)

    monkeypatch.setattr(ScriptRunner, "__call__", flaky_claim)
    worker = await start_worker(worker_concurrency=2)
    sessions = [(await _queue(runs, tokens=3, tokens_per_second=0))[0] for _ in range(4)]
    for session_id in sessions:
        await _wait_for_status(store, session_id, "completed", within=20)
    await eventually(lambda: worker.job_counter == 0, within=5)  # arq counts a job done a moment after its run ended
    assert failures == 0 and worker.sem._value == worker.max_jobs + 1  # as arq made it


async def test_a_worker_told_of_every_steer_asks_redis_for_none_at_a_boundary_and_still_takes_one_sent(
    store: SessionStore, runs: AllWrites, redis: Redis, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its listener holds its subscription to the steer channel: a boundary with nothing told looks for
    # no steer (no round trip); one sent while the run streams is told, and taken in at the next.
    asked: list[str] = []
    apply = RunLease.apply_steers

    async def counted(lease: RunLease, step_key: str, output_at: int) -> Any:
        asked.append(lease.run_id)
        return await apply(lease, step_key, output_at)

    monkeypatch.setattr(RunLease, "apply_steers", counted)
    worker = await start_worker()
    await eventually(lambda: worker.running.told_of_steers()(), what="the steer channel subscribed")
    quiet, _ = await _queue(runs, tokens=5, tokens_per_second=0)
    await _wait_for_status(store, quiet, "completed")
    assert asked == []
    steered, run_id = await _queue(runs, tokens=400, tokens_per_second=100)
    await _wait_for_status(store, steered, "running")
    await runs.steer(steered, "st_brief", "be brief")
    await _wait_for_status(store, steered, "completed", within=scaled(20))
    assert asked == [run_id]
    types = [event.type for event in await store.read(steered, 0, 10_000)]
    assert b"steer.applied" in types
