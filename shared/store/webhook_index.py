"""The webhooks index: where deliverers find the sessions with webhook events to post, and when.

The truth is each session's `hooks` list, written by its scripts in the same step as the events
(shared/store/lua/lib/webhooks.lua). The index, a sorted set beside the queue, names the sessions to look
at (score: when, in ms), like the leases index (shared/store/lease_index.py) and for the same reasons: on
one Redis, the scripts put the session in it, due at once, in that same step; with the queue apart
no script can reach it, so the callers of scripts that may report an event put the session in it
before (due after a grace, should the caller die before the script) and after (due now).

A deliverer claims due entries (claim_checks.lua moves them a claim's length ahead, so no other
takes them meanwhile, and a dead deliverer's come due again), then settles each: dropped once its
list is empty, or moved to its next retry; unless the entry was written since the claim (a new
event came), in which case it stays, due.

What a deliverer reads of a session's list, and the URLs one event reached when it goes to several,
are `SessionHooks`, on the sessions' Redis.
"""

import time
from collections.abc import Awaitable
from typing import NamedTuple, cast

from redis.asyncio import Redis

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.scripts.checks import ClaimChecks, IndexKey, SettleCheck
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.runner import ScriptRunner

GRACE_MS = 10_000  # longer than a script call takes; an intent looked at earlier is looked at again


class Claim(NamedTuple):
    session_id: str
    score: str  # the claim's, as Redis writes it: the entry is settled only if it still reads so


class WebhookIndex:
    def __init__(self, queue: Redis, keys: Keys) -> None:
        """`queue`: the queue's Redis (the sessions' Redis when they share one)."""
        self.redis = queue
        self._key = keys.webhook_checks
        self._index = IndexKey(self._key)
        self._scripts = ScriptRunner(queue, Topology())  # the index scripts read nothing of the topology

    async def intend(self, session_id: str) -> None:
        """Before a script that may report an event, with the queue apart."""
        await self.redis.zadd(self._key, {session_id: _now_ms() + GRACE_MS})

    async def due_now(self, session_id: str) -> None:
        """After it."""
        await self.redis.zadd(self._key, {session_id: _now_ms()})

    async def claim(self, count: int, claim_ms: int) -> list[Claim]:
        claimed = await self._scripts(ClaimChecks(self._index, count, claim_ms))
        return [Claim(member, claimed.score) for member in claimed.members]

    async def settle(self, claim: Claim, look_again_at_ms: int | None = None) -> None:
        """Drop the entry (or move it to `look_again_at_ms`), unless it was written since the claim."""
        next_score = str(look_again_at_ms) if look_again_at_ms is not None else ""
        await self._scripts(SettleCheck(self._index, claim.session_id, claim.score, next_score))


class SessionHooks:
    """A session's webhook events yet to post (`SessionKeys.hooks`, oldest first; the scripts drop one
    once it is done with: drop_hook.lua), and, for an event posted to several URLs, those that took it
    (a set beside the list, `<hooks>:done:<webhook id>`), so that a retry posts it to the others only."""

    def __init__(self, sessions: AnyRedis, keys: Keys) -> None:
        self._redis = sessions
        self._keys = keys

    async def first(self, session_id: str) -> bytes | None:
        """The session's oldest event yet to post, as its script wrote it."""
        return await cast(Awaitable[bytes | None], self._redis.lindex(self._keys.session(session_id).hooks, 0))

    def _done_key(self, session_id: str, webhook_id: str) -> str:
        return f"{self._keys.session(session_id).hooks}:done:{webhook_id}"

    async def posted_to(self, session_id: str, webhook_id: str) -> set[str]:
        """The URLs that took the event already."""
        done = await cast(Awaitable[set[bytes]], self._redis.smembers(self._done_key(session_id, webhook_id)))
        return {raw.decode() for raw in done}

    async def note_posted(self, session_id: str, webhook_id: str, urls: list[str], kept_seconds: int) -> None:
        """Remember that `urls` took the event, for `kept_seconds` (past its last retry)."""
        key = self._done_key(session_id, webhook_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(key, *urls)
            pipe.expire(key, kept_seconds)
            await pipe.execute()

    async def all_posted(self, session_id: str, webhook_id: str) -> None:
        """Every URL took the event: forget which."""
        await self._redis.delete(self._done_key(session_id, webhook_id))


def _now_ms() -> int:
    return int(time.time() * 1000)
