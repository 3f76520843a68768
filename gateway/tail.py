"""Blocking reads of session streams, on connections of their own.

Each waiting SSE client holds one connection while blocked in XREAD, so blocking reads never
use the pool that serves REST calls (a full pool there would stall every request), and the
socket timeout outlasts the block time (redis-py raises TimeoutError otherwise).
"""

from redis.asyncio import Redis

from shared.keys import Keys
from shared.store import StoredEvent, parse_entries


class StreamTail:
    def __init__(self, redis_url: str, keys: Keys, block_seconds: float) -> None:
        self.block_ms = max(1, int(block_seconds * 1000))
        self._keys = keys
        self._redis = Redis.from_url(redis_url, socket_timeout=block_seconds + 10, socket_keepalive=True)

    async def read(self, session_id: str, after: int, count: int) -> list[StoredEvent]:
        """Events after `after`, waiting up to the block time for the first; [] if none came."""
        key = self._keys.session(session_id).events
        reply = await self._redis.xread({key: f"{after}-0"}, count=count, block=self.block_ms)
        return parse_entries(reply[0][1]) if reply else []

    async def aclose(self) -> None:
        await self._redis.aclose()
