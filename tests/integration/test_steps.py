"""A run's recorded steps (RunContext.step) on a real Redis: kept apart from the run's record, so
recording one costs its own size, not the run's; bounded in total; handed to the worker that goes on
with the run, and gone when it ends or starts over."""

import json

import pytest
from redis.asyncio import Redis

from tests.support.sessions import completion, held, start_a_run
from tests.support.writes import AllWrites
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.records import MAX_RUN_STEPS_BYTES, MAX_STEP_BYTES
from tokentail.worker.agent_errors import StepTooLarge


async def _record_size(redis: Redis, settings: Settings, session_id: str, run_id: str) -> int:
    return int(await redis.hstrlen(Keys(settings.key_prefix).session(session_id).runs, run_id))  # type: ignore[misc]


async def test_recording_steps_leaves_the_run_record_its_size_and_a_takeover_gets_them_all(
    redis: Redis, settings: Settings, runs: AllWrites, store: SessionStore
) -> None:
    # Regression: each step was decoded and re-encoded with the whole run record, by every script that
    # touches the run: 20-40 large steps blocked Redis for seconds.
    session_id, run = await start_a_run(runs)
    lease = await held(runs, session_id, run.run_id, "lease-1")
    before = await _record_size(redis, settings, session_id, run.run_id)
    big = json.dumps("x" * 400_000)
    for number in range(20):
        await lease.record_step(f"fetch#{number}", big)
    assert await _record_size(redis, settings, session_id, run.run_id) == before
    # The worker that goes on with the run gets them, and where the last one was recorded.
    taken = await store.get_run(session_id, run.run_id, steps=True)
    assert taken is not None and len(taken.steps) == 20 and taken.step_seq == 2
    await redis.hset(Keys(settings.key_prefix).session(session_id).meta, "lease_until", "0")  # type: ignore[misc]
    await runs.look(session_id)  # a reaper takes the lease away
    started = await runs.start_run(session_id, run.run_id, "job-2", token="lease-2", takeover=2)
    assert started is not None
    assert started.run.steps == {f"fetch#{number}": big for number in range(20)} and started.run.step_seq == 2
    # The run ends: its steps go with it.
    await (await held(runs, session_id, run.run_id, "lease-2")).append([], ending=completion(run.run_id))
    assert not await redis.exists(Keys(settings.key_prefix).session(session_id).steps)


async def test_a_run_s_steps_are_bounded_in_all_with_a_clear_error_and_nothing_written(
    redis: Redis, settings: Settings, runs: AllWrites, store: SessionStore
) -> None:
    session_id, run = await start_a_run(runs)
    lease = await held(runs, session_id, run.run_id, "lease-1")
    step = json.dumps("x" * (MAX_STEP_BYTES - 100))
    count = MAX_RUN_STEPS_BYTES // len(step)
    for number in range(count):
        await lease.record_step(f"big#{number}", step)
    for _ in range(3):  # the same step recorded again (LangGraph's checkpoints) takes no more room
        await lease.record_step("big#0", step)
    with pytest.raises(StepTooLarge, match="MAX_RUN_STEPS_BYTES"):
        await lease.record_step(f"big#{count}", step)
    recorded = await store.get_run(session_id, run.run_id, steps=True)
    assert recorded is not None and sorted(recorded.steps) == sorted(f"big#{number}" for number in range(count))


async def test_a_run_that_starts_over_or_a_deleted_session_keeps_no_steps(
    redis: Redis, settings: Settings, runs: AllWrites, store: SessionStore
) -> None:
    session_id, run = await start_a_run(runs)
    await (await held(runs, session_id, run.run_id, "lease-1")).record_step("a#0", "1")
    steps_key = Keys(settings.key_prefix).session(session_id).steps
    await redis.hset(Keys(settings.key_prefix).session(session_id).meta, "lease_until", "0")  # type: ignore[misc]
    await runs.look(session_id)
    started = await runs.start_run(session_id, run.run_id, "job-2", token="lease-2", takeover="restart")
    assert started is not None and started.run.steps == {} and not await redis.exists(steps_key)
    await (await held(runs, session_id, run.run_id, "lease-2")).record_step("a#0", "2")
    await runs.delete_session(await store.get_session(session_id))
    assert not await redis.exists(steps_key)
