"""What only a real redis-server shows of the Lua scripts. Their logic is tested in-process on
fakeredis (tests/unit/: gateway/commands/test_writes.py, worker/writes/test_run_writes.py,
shared/store/test_policies.py, test_store.py); fakeredis has no `maxmemory`, and its cjson encodes an
empty Lua table as `[]` where Redis's gives `{}`."""

import json
from collections.abc import Awaitable, Callable

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from tests.servers.redis_faults import fill
from tests.support.sessions import completion, delta_of, make_run, make_session, start_a_run
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_session_id
from tokentail.shared.connections import outage
from tokentail.shared.connections.outage import out_of_memory
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.jobs import RUN_JOB
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.runs import Queued
from tokentail.shared.vocabulary.records import STEERS_STEP
from tokentail.worker.writes.run_writes import RunLease


async def test_jobs_are_written_in_arq_s_layout(store: SessionStore, runs: AllWrites, redis: Redis) -> None:
    # arq calls the job's function with `k` as keyword arguments: a JSON object, here the run's owner
    # (lib/admission.lua), which run_agent takes.
    session_id, run = await start_a_run(runs)
    second = make_run("second")
    assert (await runs.queue_run(session_id, second, multitask="enqueue")).queued is Queued.PENDING
    await RunLease(runs, session_id, run.run_id, "lease-1").append([], ending=completion(run.run_id))
    job = json.loads(await redis.get(store.keys.arq_job(second.run_id)))  # queued by the end of the first run
    owner = {"tenant": "public"}
    assert job == {"t": None, "f": RUN_JOB, "a": [session_id, second.run_id], "k": owner, "et": job["et"]}
    # A run's first job waits in its tenant's line, and in arq's queue as a deferred job (due once its turn came).
    assert await redis.zscore(store.keys.tenant_line("public"), second.run_id) == job["et"]
    assert await redis.zscore(store.keys.queue, second.run_id) == 1e13 + job["et"]


async def _snapshot(redis: Redis, prefix: str) -> dict[bytes, bytes | None]:
    return {key: await redis.dump(key) async for key in redis.scan_iter(f"{prefix}:*")}


async def test_scripts_refused_by_a_full_redis_change_nothing(
    private_redis_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's writes ride a full Redis out as an outage (a minute), then give up: briefly here.
    monkeypatch.setattr(outage, "OUTAGE_SECONDS", 0.5)
    redis = Redis.from_url(private_redis_url)
    store = SessionStore(redis, settings.model_copy(update={"redis_url": private_redis_url}))
    runs = AllWrites(redis, settings.model_copy(update={"redis_url": private_redis_url}))
    running, run = await start_a_run(runs)
    queued, waiting = make_session(), make_run()
    await runs.queue_run(queued.session_id, waiting, create=queued)
    await runs.steer(running, "st_0", "waiting for the run's agent")  # a run's end fails it, first
    await fill(redis)
    before = await _snapshot(redis, store.keys.prefix)
    refused: dict[str, Callable[[], Awaitable[object]]] = {
        "queue_run": lambda: runs.queue_run(running, make_run("more"), multitask="enqueue"),
        "create": lambda: runs.queue_run(new_session_id(), make_run(), create=make_session()),
        "start_run": lambda: runs.start_run(queued.session_id, waiting.run_id, "job", token="lease"),
        "append": lambda: RunLease(runs, running, run.run_id, "lease-1").append([delta_of(run.run_id)]),
        "end": lambda: RunLease(runs, running, run.run_id, "lease-1").append([], ending=completion(run.run_id)),
        "renew_lease": lambda: RunLease(runs, running, run.run_id, "lease-1").renew(),
        "cancel_run": lambda: runs.cancel_run(queued.session_id),
        "steer": lambda: runs.steer(running, "st_1", "x"),
        "apply_steers": lambda: RunLease(runs, running, run.run_id, "lease-1").apply_steers(f"{STEERS_STEP}#0", 0),
        "writable": runs.writable,
    }
    for name, call in refused.items():
        try:
            await call()
        except redis_errors.ResponseError as exc:  # Redis 6.2 says it inside a script's own error
            assert out_of_memory(exc), exc
        else:
            pytest.fail(f"{name} was not refused")
        assert await _snapshot(redis, store.keys.prefix) == before, name
    await redis.aclose()
