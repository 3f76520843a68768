"""Redis commands from every concurrent request or run of a process, sent together.

A gateway serves many requests at once, a worker many runs; each asks Redis a command or a few at a
time. Sent one by one, each pays a pool checkout, a packing and a write of its own, and Redis a read
of its own: more than the command itself costs either side. Here the commands asked while a round
trip is on its way wait for it to come back, then go together, as one buffer on the one connection
they all use, and their replies are handed back to each caller in order. Alone, a command goes once
the loop step that asked it is over (with whatever else that step asked). Each caller keeps its own
replies: an error reply fails only its own command.

The connection is redis-py's (connect, AUTH, SELECT, TLS, keepalive, Sentinel: its own), taken from
the client's pool once, for good; once open, it is read by a protocol of this module's
(`_Replies`, a `TakenOver`: shared/connections/taken_over.py): each network read is parsed by hiredis, in C, and
the replies are handed to the callers in that callback. No task, stream reader or lock per round
trip: a round trip is one write and one callback. The connection is opened again when it was lost
(Redis restarted, a failover): the round trip out fails, with redis-py's ConnectionError, and the
commands asked since go on the new connection. A round trip that waits longer than the client's
`socket_timeout` for Redis fails with redis-py's TimeoutError, its connection dropped. A caller that
stops waiting (cancelled) leaves nothing owed on the connection: its replies are read and dropped.

`round_trips(redis)` is the one `RoundTrips` of a client. A Redis Cluster client's commands go per
caller, alone or in a pipeline of their own, which redis-py routes node by node, and whose replies pass through
redis-py's reply callbacks: send this way only commands whose replies those leave as Redis sent
them (HMGET, GET, EXISTS, HVALS, EVALSHA; XRANGE, whose callback the store makes the identity); a
caller of HGETALL, which a cluster client makes a dict, takes either (the store's `get_session`).
"""

import asyncio
import collections
import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokentail.shared.connections.taken_over import TakenOver, reader_of

Command = Sequence[Any]
_Waiting = tuple["asyncio.Future[list[Any]]", int, list[Any]]  # a caller, how many replies it is owed, those come


def _checkout_args(pool: ConnectionPool) -> tuple[str, ...]:
    """redis-py 5.2 requires a command name to check out a connection; 5.3 deprecates passing one."""
    name = inspect.signature(pool.get_connection).parameters.get("command_name")
    return ("EVALSHA",) if name is not None and name.default is inspect.Parameter.empty else ()


class _Replies(TakenOver):
    """The round trips' connection once open: what each network read completes goes to `trips`."""

    def __init__(self, trips: "RoundTrips", connection: Connection) -> None:
        self.trips = trips
        self.parser = reader_of(connection)
        super().__init__(connection)

    def send(self, data: bytes, owed: int) -> None:
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        try:
            self.trips._replied(self, self.parser.gets)
        except Exception as exc:  # not Redis's protocol: the round trip out fails, a new connection is opened
            self.trips._lost(self, RedisConnectionError(f"unreadable reply from Redis: {exc}"))
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        why = f"Error while reading from Redis: {exc}" if exc is not None else "Connection closed by server."
        self.trips._lost(self, RedisConnectionError(why))
        super().connection_lost(exc)

    def abort(self) -> None:
        self.transport.abort()


class _ReadByRedisPy:
    """A connection that is no socket (fakeredis's, in the unit tests) is written and read by
    redis-py's own calls, a round trip at a time, in a task."""

    def __init__(self, trips: "RoundTrips", connection: Connection) -> None:
        self.trips = trips
        self.connection = connection
        self._task: asyncio.Future[None] | None = None

    def send(self, data: bytes, owed: int) -> None:
        self._task = asyncio.ensure_future(self._exchange(data, owed))

    async def _exchange(self, data: bytes, owed: int) -> None:
        replies: list[Any] = []
        try:
            await self.connection.send_packed_command(data, check_health=False)
            for _ in range(owed):
                try:
                    replies.append(await self.connection.read_response())
                except ResponseError as exc:  # the error reply of one command: the connection is fine
                    replies.append(exc)
        except Exception as exc:
            self.trips._lost(self, exc)
            return
        self.trips._replied(self, collections.deque([*replies, False]).popleft)

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()


class RoundTrips:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._pool = None if isinstance(redis, RedisCluster) else cast(ConnectionPool, redis.connection_pool)
        self._checkout = () if self._pool is None else _checkout_args(self._pool)
        self._connection: Connection | None = None  # taken from the pool once, for good
        self._link: _Replies | _ReadByRedisPy | None = None  # reading it, while it is open
        self._opening: asyncio.Task[None] | None = None
        self._asked: list[tuple[asyncio.Future[list[Any]], list[bytes]]] = []  # not sent yet
        self._out: collections.deque[_Waiting] = collections.deque()  # the round trip on its way
        self._soon = False  # a send is asked for the end of this loop step
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._heard = 0.0  # when Redis last sent, or a round trip last went: its silence since is timed

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
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._asked.append((future, [hiredis.pack_command(tuple(command)) for command in commands]))
        if not self._soon and not self._out:
            self._soon = True
            loop.call_soon(self._send)
        return future

    # -- one connection, one round trip at a time --------------------------------------------------

    def _send(self) -> None:
        """Write every command asked, at once, unless a round trip is on its way (they go when it is
        back) or the connection is being opened (they go once it is)."""
        self._soon = False
        if self._out or not self._asked:
            return
        link = self._link
        if link is None:
            if self._opening is None:
                self._opening = asyncio.ensure_future(self._open())
            return
        asked, self._asked = self._asked, []
        out = self._out
        for future, packed in asked:
            out.append((future, len(packed), []))
        # One buffer, one write: given a list, the transport writes each item as it comes.
        link.send(b"".join([item for _, packed in asked for item in packed]), sum(owed for _, owed, _ in out))
        self._heard = cast(asyncio.AbstractEventLoop, self._loop).time()
        if self._timer is None and (timeout := self._timeout()):
            self._timer = cast(asyncio.AbstractEventLoop, self._loop).call_later(timeout, self._check_silence)

    def _replied(self, link: "_Replies | _ReadByRedisPy", gets: Callable[[], Any]) -> None:
        """Hand each reply a network read completed (`gets()`, each in turn: False when none is left)
        to its caller, in order; once the round trip is back, send what was asked meanwhile."""
        out = self._out
        self._heard = cast(asyncio.AbstractEventLoop, self._loop).time()
        while (reply := gets()) is not False:
            if not out:
                raise RedisConnectionError("Redis sent a reply nobody asked for")
            future, owed, got = out[0]
            got.append(reply)
            if len(got) == owed:
                out.popleft()
                if not future.done():  # (its caller stopped waiting)
                    future.set_result(got)
        if not out:
            self._send()

    async def _open(self) -> None:
        """Open the connection (again), then send what waits; if it cannot be opened, what waits fails."""
        try:
            pool = cast(ConnectionPool, self._pool)
            if self._connection is None:
                self._connection = cast(Connection, await pool.get_connection(*self._checkout))
            else:
                await self._connection.disconnect(nowait=True)
                await self._connection.connect()  # type: ignore[no-untyped-call]
            connection = self._connection
            if hasattr(getattr(connection._writer, "transport", None), "set_protocol"):
                self._link = _Replies(self, connection)
            else:
                self._link = _ReadByRedisPy(self, connection)
        except Exception as exc:
            asked, self._asked = self._asked, []
            for future, _ in asked:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._opening = None
        self._send()

    def _lost(self, link: "_Replies | _ReadByRedisPy", error: Exception) -> None:
        """The connection ended (or brought what is not Redis's): the round trip on its way fails; what
        was asked since goes on a new connection."""
        if link is not self._link:
            return
        self._link = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        out, self._out = self._out, collections.deque()
        for future, _, _ in out:
            if not future.done():
                future.set_exception(error)
        if self._asked and not self._soon:
            self._soon = True
            cast(asyncio.AbstractEventLoop, self._loop).call_soon(self._send)

    def _timeout(self) -> float | None:
        return None if self._connection is None else self._connection.socket_timeout

    def _check_silence(self) -> None:
        """A round trip out and Redis silent past the client's socket timeout: Redis is stuck or gone."""
        self._timer = None
        timeout, link, loop = self._timeout(), self._link, cast(asyncio.AbstractEventLoop, self._loop)
        if not self._out or link is None or not timeout:
            return
        left = self._heard + timeout - loop.time()
        if left > 0:
            self._timer = loop.call_later(left, self._check_silence)
            return
        self._lost(link, RedisTimeoutError("Timeout reading from Redis"))
        link.abort()

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
