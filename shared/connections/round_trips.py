"""Redis commands from every concurrent request or run of a process, sent together.

A gateway serves many requests at once, a worker many runs; each asks Redis a command or a few at a
time. Sent one by one, each pays a pool checkout, a packing and a write of its own, and Redis a read
of its own: more than the command itself costs either side. Here the commands asked while a round
trip is on its way wait for it to come back, then go together (shared/connections/joiner.py), as one buffer on
the one connection they all use, and their replies are read in order and handed back to each
caller. Alone, a command goes at once. Each caller keeps its own replies: an error reply fails
only its own command.

`round_trips(redis)` is the one `RoundTrips` of a client. A Redis Cluster client's commands go per
caller, alone or in a pipeline of their own, which redis-py routes node by node, and whose replies pass through
redis-py's reply callbacks: send this way only commands whose replies those leave as Redis sent
them (HMGET, GET, EXISTS, HVALS, EVALSHA; XRANGE, whose callback the store makes the identity); a
caller of HGETALL, which a cluster client makes a dict, takes either (the store's `get_session`).
"""

import asyncio
import inspect
import time
import weakref
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from tokentail.shared.connections.joiner import Joiner, split_replies

Command = Sequence[Any]
IDLE_CHECK_SECONDS = 1.0  # a connection unused this long is checked before its next round trip


def _checkout_args(pool: ConnectionPool) -> tuple[str, ...]:
    """redis-py 5.2 requires a command name to check out a connection; 5.3 deprecates passing one."""
    name = inspect.signature(pool.get_connection).parameters.get("command_name")
    return ("EVALSHA",) if name is not None and name.default is inspect.Parameter.empty else ()


class RoundTrips:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._joiner: Joiner[list[bytes], list[Any]] = Joiner(self._send)
        self._pool = None if isinstance(redis, RedisCluster) else cast(ConnectionPool, redis.connection_pool)
        self._checkout = () if self._pool is None else _checkout_args(self._pool)
        self._held: Connection | None = None
        self._used = 0.0

    async def __call__(self, *commands: Command) -> list[Any]:
        """The replies of `commands`, in order, as Redis sent them (no redis-py response callbacks);
        an error reply is raised, the first one, as a pipeline's `execute()` does."""
        replies = await self.submit(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """`script`'s reply to `keys` and `args` (EVALSHA; loaded again if Redis forgot it)."""
        (reply,) = await self.script_calls(script, [(keys, args)])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def script_calls(
        self, script: AsyncScript, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
    ) -> list[Any]:
        """`script`'s reply to each call's keys and arguments, in one round trip, an error reply as its
        exception. If Redis forgot the script (a restart, SCRIPT FLUSH), the calls that found it
        missing are sent again with the script whole (EVAL, which Redis keeps), joined like any other."""
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
        replies = await self.submit(commands)
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:
            whole = [("EVAL", script.script, *commands[i][2:]) for i in again]
            for i, reply in zip(again, await self.submit(whole), strict=True):
                replies[i] = reply
        return replies

    def submit(self, commands: Sequence[Command]) -> "asyncio.Future[list[Any]]":
        """The replies of `commands` as a future, each error reply as its exception (for a caller that
        does not wait in a task of its own, or keeps each command's error apart)."""
        if self._pool is None:  # a cluster's
            return asyncio.ensure_future(self._cluster_pipeline(commands))
        return self._joiner.submit([hiredis.pack_command(tuple(command)) for command in commands])

    async def _send(self, batch: list[list[bytes]]) -> list[list[Any]]:
        return await split_replies(batch, self._round_trip)

    async def _round_trip(self, packed: list[bytes]) -> list[Any]:
        """Every command written at once, then their replies read in order. What redis-py's Pipeline
        does around a round trip is kept: its retry policy, and a disconnect on any error,
        cancellation included (redis-py's send and read do it), so that no reply is left owed on the
        connection: the next round trip connects again."""
        connection = await self._connection()
        return cast(
            list[Any],
            await connection.retry.call_with_retry(
                lambda: self._exchange(connection, packed), lambda error: connection.disconnect()
            ),
        )

    async def _connection(self) -> Connection:
        """The one connection the round trips go on, one at a time: taken from the pool once, for good
        (a checkout per round trip cost a lock, a wait and a read of the socket each). One that sat
        idle a while is checked as the pool checks its own (Redis may have restarted meanwhile)."""
        pool = cast(ConnectionPool, self._pool)  # not a cluster's
        now = time.monotonic()
        if self._held is None:
            self._held = cast(Connection, await pool.get_connection(*self._checkout))
        elif now - self._used > IDLE_CHECK_SECONDS:
            await pool.ensure_connection(self._held)
        self._used = now
        return self._held

    @staticmethod
    async def _exchange(connection: Connection, packed: list[bytes]) -> list[Any]:
        # One buffer, one write: given a list, the transport writes each item as it comes (uvloop
        # tries a send per item), which cost as much as the rest of the round trip.
        # No health check per round trip: `_connection` checks one that sat idle.
        await connection.send_packed_command(b"".join(packed), check_health=False)
        replies: list[Any] = []
        for _ in packed:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:  # the error reply of one command: the connection is fine
                replies.append(exc)
        return replies

    async def _cluster_pipeline(self, commands: Sequence[Command]) -> list[Any]:
        if len(commands) == 1:  # alone, as redis-py sends a command: retried through a failover as it retries those
            try:
                return [await self.redis.execute_command(*commands[0])]
            except ResponseError as exc:
                return [exc]
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)


_of_client: "weakref.WeakKeyDictionary[Redis | RedisCluster, RoundTrips]" = weakref.WeakKeyDictionary()


def round_trips(redis: Redis | RedisCluster) -> RoundTrips:
    """The `RoundTrips` of `redis`: one per client, so that everything the process sends on it is joined."""
    trips = _of_client.get(redis)
    if trips is None:
        trips = _of_client[redis] = RoundTrips(redis)
    return trips
