"""The unit tier runs in-process: no redis-server, no network. Its Redis is fakeredis (with Lua, so the
scripts in shared/store/lua/ run as they are), a new one for each test.

`redis` and `settings` here take the place of the real-Redis ones (tests/fixtures/real_redis.py); the
`store` and `runs` built on them are then fakeredis-backed too. What fakeredis does not do as Redis
does stays in tests/integration (see tests/integration/test_store.py), but for XSETID, which the
fence of every lease-taking script runs (lib/seqs.lua) and fakeredis 2.41 lacks: added below, as
Redis 7.0 answers its plain form (tests/integration/test_fence.py holds the scripts to the real one)."""

import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
from fakeredis._commands import Key, command
from fakeredis._helpers import SimpleError
from fakeredis._socket._fakesocket import FakeSocket
from fakeredis.model import XStream
from fakeredis.model._stream import StreamEntryKey

from tokentail.redis_server import RedisServer
from tokentail.shared.plumbing.settings import Settings

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


@command(name="XSETID", fixed=(Key(XStream), bytes))
def xsetid(self: FakeSocket, key: object, last_id: bytes) -> bytes:
    """XSETID key last-id: the stream's last generated id, not below its top entry's."""
    stream = key.value  # type: ignore[attr-defined]
    if stream is None:
        raise SimpleError("ERR no such key")
    wanted = StreamEntryKey.parse_str(last_id)
    if stream._ids and wanted < stream._ids[-1]:
        raise SimpleError("ERR The ID specified in XSETID is smaller than the target stream top item")
    stream._last_id = wanted
    return b"OK"


FakeSocket.xsetid = xsetid  # type: ignore[attr-defined]
