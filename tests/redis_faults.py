"""Faults a Redis can have, made on purpose: full (over `maxmemory`, with `noeviction`), paused,
losing its last writes."""

import contextlib
import os
import signal
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from tokentail.shared.keys import Keys
from tokentail.shared.settings import Settings


async def fill(redis: Redis) -> None:
    """From now on Redis refuses every write that may grow it, as when it filled up: its limit is
    set below what it holds already. Reads and deletes go on."""
    await redis.config_set("maxmemory-policy", "noeviction")
    await redis.config_set("maxmemory", 1)


async def drain(redis: Redis) -> None:
    """Lift the limit again."""
    await redis.config_set("maxmemory", 0)


@contextlib.asynccontextmanager
async def full(redis: Redis) -> AsyncIterator[None]:
    await fill(redis)
    try:
        yield
    finally:
        await drain(redis)


def pause(pid: int) -> None:
    """Freeze the redis-server process (as a VM pause or a long fork would): it answers nothing."""
    os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def rolled_back_after(redis: Redis, settings: Settings, session_id: str) -> AsyncIterator[None]:
    """What is written to the session's events and meta inside the block is lost when it ends, as a
    failover to a replica that had not received it yet loses it."""
    keys = Keys(settings.key_prefix).session(session_id)
    saved = [(key, await redis.dump(key)) for key in (keys.meta, keys.events)]
    yield
    async with redis.pipeline(transaction=True) as pipe:
        for key, dumped in saved:
            pipe.restore(key, 0, dumped, replace=True)
        await pipe.execute()
