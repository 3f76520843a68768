"""The Agent Client Protocol's connections (gateway/protocols/acp/), kept in Redis so that any gateway
answers any of a connection's requests and serves any of its streams: a gateway that dies takes
nothing of them with it.

A connection (made by `initialize`, named by its `Acp-Connection-Id`) is a record (who made it, the
agent it asked for, the client's capabilities), the place each of its sessions' streams starts at
(the event after which it shows them: a session it made, from its start; one it loaded, after what
the load replayed), an outbox (a stream: the messages that are the connection's, not a session's,
each entry the messages one request answered with, in order) and its prompts (which run each
`session/prompt` queued, and that request's JSON-RPC id, for the prompt's answer at the run's end).
Each lives for `ttl` seconds past the connection's last use, in one hash tag (`Keys.acp`).
"""

import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SESSION_GONE

OUTBOX_KEPT = 256  # entries of a connection's outbox kept: a client that fell further behind has lost it
_SESSION = "s:"  # in the record, before a session's id: the event its stream starts after


@dataclass
class AcpConnection:
    connection_id: str
    tenant: str
    agent: str | None  # the one `/acp?agent=` named, for its sessions (else the catalog's default)
    capabilities: dict[str, Any] = field(default_factory=dict)  # the client's, as `initialize` sent them
    sessions: dict[str, int] = field(default_factory=dict)  # session id -> the event its stream starts after


class AcpConnections:
    def __init__(self, redis: AnyRedis, keys: Keys, ttl_seconds: int, cluster: bool) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds
        self._cluster = cluster  # (whose hub hears a key's shard: SPUBLISH)

    def _names(self, connection_id: str) -> tuple[str, str, str]:
        stem = self._keys.acp(connection_id)
        return f"{stem}:conn", f"{stem}:out", f"{stem}:prompts"

    def channel(self, connection_id: str) -> str:
        """Where an entry put in the outbox is told (`SESSION_GONE`: its readers look again), so a reader
        waits for it on its gateway's one notifications connection (the hub's) and holds no other."""
        return f"{self._keys.acp(connection_id)}:told"

    async def create(self, connection: AcpConnection) -> None:
        record, _, _ = self._names(connection.connection_id)
        fields = {
            "tenant": connection.tenant,
            "agent": connection.agent or "",
            "caps": json.dumps(connection.capabilities),
        }
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(record, mapping=fields)
            pipe.expire(record, self._ttl)
            await pipe.execute()

    async def get(self, connection_id: str) -> AcpConnection | None:
        """The connection, if it is still kept; its keys are kept `ttl` more from now."""
        names = self._names(connection_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(names[0])
            for name in names:
                pipe.expire(name, self._ttl)
            found, *_ = await pipe.execute()
        if b"tenant" not in found:  # (none, or a session opened as it was deleted: gone)
            return None
        fields = {key.decode(): value.decode() for key, value in found.items()}
        sessions = {key[len(_SESSION) :]: int(value) for key, value in fields.items() if key.startswith(_SESSION)}
        caps = json.loads(fields.get("caps", "{}"))
        return AcpConnection(connection_id, fields["tenant"], fields.get("agent") or None, caps, sessions)

    async def open_session(self, connection_id: str, session_id: str, after: int) -> None:
        """The connection shows session `session_id` from after event `after` on."""
        record, _, _ = self._names(connection_id)
        async with self._redis.pipeline(transaction=False) as pipe:  # (one deleted meanwhile: it lapses)
            pipe.hset(record, f"{_SESSION}{session_id}", str(after))
            pipe.expire(record, self._ttl)
            await pipe.execute()

    async def delete(self, connection_id: str) -> None:
        await cast(Awaitable[int], self._redis.delete(*self._names(connection_id)))

    async def send(self, connection_id: str, messages: list[dict[str, Any]]) -> str:
        """Put `messages` in the connection's outbox, one entry: its id."""
        _, outbox, _ = self._names(connection_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(outbox, {"m": json.dumps(messages, separators=(",", ":"))}, maxlen=OUTBOX_KEPT, approximate=True)
            pipe.expire(outbox, self._ttl)
            pipe.execute_command("SPUBLISH" if self._cluster else "PUBLISH", self.channel(connection_id), SESSION_GONE)
            entry, *_ = await pipe.execute()
        return cast(bytes, entry).decode()

    async def sent(self, connection_id: str, after: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """The outbox's entries after `after` (an entry id, `0` from its first), as many as there are."""
        _, outbox, _ = self._names(connection_id)
        read = await self._redis.xread({outbox: after}, count=OUTBOX_KEPT)
        return [(entry.decode(), json.loads(fields[b"m"])) for _, entries in read for entry, fields in entries]

    async def remember_prompt(self, connection_id: str, run_id: str, request_ids: list[Any]) -> None:
        """The prompts whose answer is run `run_id`'s end: the one that queued it, and those that steered it."""
        _, _, prompts = self._names(connection_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(prompts, run_id, json.dumps(request_ids))
            pipe.expire(prompts, self._ttl)
            await pipe.execute()

    async def prompts(self, connection_id: str) -> dict[str, list[Any]]:
        """Each run the connection's prompts queued or steered -> those requests' ids, as they were sent."""
        _, _, prompts = self._names(connection_id)
        found = await cast(Awaitable[dict[bytes, bytes]], self._redis.hgetall(prompts))
        return {run_id.decode(): json.loads(request_ids) for run_id, request_ids in found.items()}
