"""The reads of clients' event feeds, on a Redis client of their own.

Each waiting client holds one connection while blocked in XREAD, so these reads never use the pool
that serves REST calls (a full pool there would stall every request).

The client has no socket timeout, on purpose. With one, redis-py wraps each command's send in
`asyncio.wait_for`, which on Python 3.11 swallows a cancellation that lands as the send completes
(python/cpython#86296): a feed whose client left, or that the gateway's shutdown woke, would go on
reading, holding its connection and its tenant's stream slot for ever. Without it, nothing on a
feed's path can lose a cancellation. A Redis that vanished without closing the connection is
noticed by TCP keepalive instead, within about 25 s; a Redis that is only slow is waited for.
"""

import socket

from redis.asyncio import Redis

from shared.settings import Settings
from shared.store import SessionStore, StoredEvent, parse_entries

_KEEPALIVE = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}


class StreamTail:
    def __init__(self, settings: Settings) -> None:
        self.block_ms = max(1, int(settings.sse_heartbeat_seconds * 1000))
        self._redis = Redis.from_url(
            str(settings.redis_url), socket_keepalive=True, socket_keepalive_options=_KEEPALIVE
        )
        self.store = SessionStore(self._redis, settings)  # catch-up reads and positions, on this client too

    async def read(self, session_id: str, after: int, count: int) -> list[StoredEvent]:
        """Events after `after`, waiting up to the block time for the first; [] if none came."""
        key = self.store.keys.session(session_id).events
        reply = await self._redis.xread({key: f"{after}-0"}, count=count, block=self.block_ms)
        return await self.store.with_outputs(session_id, parse_entries(reply[0][1])) if reply else []

    async def aclose(self) -> None:
        await self._redis.aclose()
