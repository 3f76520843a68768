"""The archive's checks index: which sessions the archiver looks at, and when (`Keys.archive_checks`,
on the sessions' Redis). The session's scripts put it there (their `archive_checks` key); the archiver
claims due entries (claim_checks.lua) and settles them (archived.lua), and holds back one it cannot
archive (`look_again_at`).
"""

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.store.keys import Keys


async def look_again_at(redis: AnyRedis, keys: Keys, session_id: str, at_ms: int) -> None:
    """Move the session's entry to `at_ms` (epoch ms), if it still has one: a session settled or
    deleted meanwhile is not put back."""
    await redis.zadd(keys.archive_checks, {session_id: at_ms}, xx=True)
