"""Redis paused, restarted, full, or losing its last writes under runs in flight, with real processes:
no run is restarted, none is lost, no worker stops, and every client's stream stays whole. Figures are printed
(`pytest -s`), not asserted: machines are noisy."""

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from redis.asyncio import Redis

from tests.clients.sse_client import read_events
from tests.e2e.conftest import Stack
from tests.e2e.watcher import Watcher
from tests.servers.redis_faults import full, pause, resume
from tests.support.waiting import eventually, scaled
from tokentail.worker.providers.scripted import scripted_tokens

RUNS = 20
TOKENS = 400
PARAMS = {"tokens": TOKENS, "tokens_per_second": 50}  # 8 s a run: the fault strikes mid-answer
LOST_SECONDS = 0.3  # what a replica a moment behind lacks: a few deltas of each run
OUTAGE_SECONDS = float(os.environ.get("TEST_REDIS_OUTAGE_SECONDS", 6))  # longer than the default 5 s lease


async def _runs_through(stack: Stack, fault: Callable[[httpx2.AsyncClient, str], Awaitable[None]]) -> list[Watcher]:
    """RUNS runs on two workers, each followed by a client; `fault` strikes once all have begun."""
    url = stack.gateway()
    workers = [stack.worker(), stack.worker()]
    await asyncio.to_thread(stack.wait_for_workers, 2)
    async with httpx2.AsyncClient(base_url=url, timeout=60) as client:
        # Made at once, so that all are early in their answers when the fault strikes: made one by one
        # on a busy machine, the first could end within it (a loss that takes back a run's last event
        # after its worker is done is a promotion's whole rollback, lease and index too, which the fault
        # here does not imitate).
        bodies = [{"input": f"question {i}", "params": PARAMS} for i in range(RUNS)]
        made = await asyncio.gather(*(client.post("/v1/sessions", json=body) for body in bodies))
        watchers = [Watcher(client, response.json()["events_url"]) for response in made]
        following = [asyncio.create_task(watcher.follow()) for watcher in watchers]
        await eventually(lambda: min(watcher.deltas() for watcher in watchers) >= 5, within=60, interval=0.02)
        struck = time.monotonic()
        await fault(client, url)
        await asyncio.wait_for(asyncio.gather(*following), scaled(90))
        print(f"  all {RUNS} answers complete {time.monotonic() - struck:.1f} s after the fault began")  # noqa: T201
    assert [worker.poll() for worker in workers] == [None, None], "a worker stopped"
    return watchers


def _assert_none_restarted(watchers: list[Watcher]) -> None:
    restarted = sum(1 for watcher in watchers if watcher.seen.of("run.retrying"))
    print(f"  runs restarted: {restarted} of {len(watchers)}")  # noqa: T201
    for i, watcher in enumerate(watchers):
        seen = watcher.seen
        assert seen.ids == list(range(1, len(seen.ids) + 1)), "contiguous ids, no duplicate"
        assert seen.events[-1][1] == "run.completed"
        assert watcher.answer() == seen.events[-1][2]["output"] == "".join(scripted_tokens(f"question {i}", TOKENS))
    assert restarted == 0


async def test_a_redis_pause_longer_than_a_lease_restarts_no_run(stack: Stack) -> None:
    async def freeze(client: httpx2.AsyncClient, url: str) -> None:
        assert stack.redis.process is not None
        pause(stack.redis.process.pid)  # as DEBUG SLEEP, a VM pause or a slow fork would
        await asyncio.sleep(OUTAGE_SECONDS)
        resume(stack.redis.process.pid)

    print(f"\nRedis paused {OUTAGE_SECONDS:.0f} s (lease 5 s) under {RUNS} runs:")  # noqa: T201
    _assert_none_restarted(await _runs_through(stack, freeze))


async def test_a_redis_restart_restarts_no_run(stack: Stack) -> None:
    async def restart(client: httpx2.AsyncClient, url: str) -> None:
        started = time.monotonic()
        await asyncio.to_thread(stack.redis.stop)  # SIGTERM: Redis writes its AOF and exits
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(stack.redis.start)  # same port and data: the AOF is replayed
        print(f"  Redis was down {time.monotonic() - started:.1f} s")  # noqa: T201

    print(f"\nRedis restarted (AOF) under {RUNS} runs:")  # noqa: T201
    _assert_none_restarted(await _runs_through(stack, restart))


async def test_a_full_redis_stops_no_worker_and_loses_no_run(stack: Stack) -> None:
    async def fill_up(client: httpx2.AsyncClient, url: str) -> None:
        redis = Redis.from_url(stack.redis.url)
        async with full(redis):
            refused = await client.post("/v1/sessions", json={"input": "more"})
            assert refused.status_code == 503 and refused.json()["error"]["type"] == "redis_full"
            assert (await client.get("/readyz")).status_code == 503
            await asyncio.sleep(OUTAGE_SECONDS)  # appends and renewals are refused all this time
        await redis.aclose()
        assert (await client.get("/readyz")).status_code == 200

    print(f"\nRedis full (noeviction) for {OUTAGE_SECONDS:.0f} s under {RUNS} runs:")  # noqa: T201
    watchers: list[Any] = await _runs_through(stack, fill_up)
    _assert_none_restarted(watchers)


async def test_events_a_failover_lost_are_written_again_under_the_same_ids(stack: Stack) -> None:
    """As a failover to a replica a moment behind would: every session's events and meta, and the
    workers' counts of their appends, lose their last LOST_SECONDS of writes under live followers.
    Each run writes what it lost again, under the same ids, so followers and later readers all get
    the whole answer."""
    prefix = stack.env["TOKENTAIL_KEY_PREFIX"]

    async def lose_last_writes(client: httpx2.AsyncClient, url: str) -> None:
        async with Redis.from_url(stack.redis.url) as redis:
            keys = [key async for key in redis.scan_iter(f"{prefix}:*:meta")]
            keys += [key async for key in redis.scan_iter(f"{prefix}:*:events")]
            # The workers' counts of their joined appends too (shared/store/scripts/pipeline.py): a replica
            # a moment behind is behind on every key the primary was sent.
            keys += [key async for key in redis.scan_iter(f"{prefix}:joined-count:*")]
            async with redis.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.dump(key)
                dumps = await pipe.execute()
            await asyncio.sleep(LOST_SECONDS)
            async with redis.pipeline(transaction=True) as pipe:  # at one instant, as a promotion
                for key, dumped in zip(keys, dumps, strict=True):
                    pipe.restore(key, 0, dumped, replace=True)
                await pipe.execute()

    print(f"\nRedis lost its last {LOST_SECONDS} s of writes under {RUNS} runs:")  # noqa: T201
    watchers = await _runs_through(stack, lose_last_writes)
    _assert_none_restarted(watchers)
    async with httpx2.AsyncClient(timeout=30) as client:
        for watcher in watchers:
            stored = await read_events(client, watcher.url)
            assert stored.ids == watcher.seen.ids
            assert "".join(data["text"] for data in stored.of("message.delta")) == watcher.answer()
