"""Faults a Redis can have, made on purpose: full (at `maxmemory` with `noeviction`), paused."""

import contextlib
import os
import signal
from collections.abc import AsyncIterator

from redis import exceptions as redis_errors
from redis.asyncio import Redis

BALLAST = "ballast:"


async def fill(redis: Redis) -> None:
    """Fill Redis to its memory limit: from now on it refuses every write that would grow it."""
    used = int((await redis.info("memory"))["used_memory"])
    await redis.config_set("maxmemory-policy", "noeviction")
    await redis.config_set("maxmemory", used + 2_000_000)
    with contextlib.suppress(redis_errors.OutOfMemoryError):
        for i in range(100_000):
            await redis.set(f"{BALLAST}{i}", "x" * 10_000)
    with contextlib.suppress(redis_errors.OutOfMemoryError):  # what is left, in small pieces
        for i in range(100_000):
            await redis.set(f"{BALLAST}small:{i}", "x" * 100)
    await redis.config_set("maxmemory", int((await redis.info("memory"))["used_memory"]) + 1024)


async def drain(redis: Redis) -> None:
    """Free the ballast and lift the limit."""
    await redis.config_set("maxmemory", 0)
    async for key in redis.scan_iter(f"{BALLAST}*", count=1000):
        await redis.delete(key)


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
