"""The unit tier runs in-process: no redis-server, no network. Its Redis is fakeredis (with Lua, so the
scripts in shared/lua/ run as they are), a new one for each test.

`redis` and `settings` here take the place of the real-Redis ones (tests/fixtures/real_redis.py); the
`store` and `runs` built on them are then fakeredis-backed too. What fakeredis does not do as Redis
does stays in tests/integration (see tests/integration/test_store.py)."""

import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest

from tokentail.redis_server import RedisServer
from tokentail.shared.settings import Settings

NO_SERVER = (
    "the unit tier runs without a redis-server: use the fakeredis `redis`, or move the test to tests/integration"
)


@pytest.fixture(autouse=True)
def no_redis_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail(NO_SERVER)

    monkeypatch.setattr(RedisServer, "start", refuse)


@pytest.fixture
def redis_url() -> str:
    pytest.fail(NO_SERVER)


@pytest.fixture
def private_redis_url() -> str:
    pytest.fail(NO_SERVER)


@pytest.fixture
def settings() -> Settings:
    # As the real-Redis tiers' settings; the URL is never connected to.
    return Settings(
        key_prefix=f"tt-test-{uuid.uuid4().hex[:12]}",
        sse_heartbeat_seconds=1.0,
        lease_ms=3000,
        poll_interval_seconds=0.5,
    )


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    """One Redis as fakeredis keeps it; several clients may share it (a second one: a queue apart)."""
    return fakeredis.FakeServer()


@pytest.fixture
async def redis(fake_server: fakeredis.FakeServer) -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis(server=fake_server)
    yield client
    await client.aclose()
