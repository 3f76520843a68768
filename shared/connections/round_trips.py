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

`round_trips(redis)` is the one `RoundTrips` of a client. On a Redis Cluster it is a
`ClusterRoundTrips`: one such connection per primary (opened by redis-py's node, as the stream hub
opens its own, and closed with the client), each command sent on the connection of its key's slot
(`slot_of`: a script's first key, any other command's first argument), the commands of every caller
that go to one primary joined as above. A command a node answers MOVED (its slot went to another
primary) or ASK (the slot is migrating and its keys are gone) is sent again where Redis said, the
slot map patched (redis-py's); TRYAGAIN (a multi-key command whose keys a migration split) a little
later; past a few of these, the command fails with ClusterError, an outage (shared/connections/outage.py).
A node's round trip that fails (a primary down, CLUSTERDOWN) fails its own commands alone, and has
the slot map read again (a failover promotes a replica). On every topology the replies are as Redis
sent them: no redis-py reply callback, HGETALL a list of field, value, ...
"""

import asyncio
import collections
import functools
import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection, ConnectionPool
from redis.cluster import get_node_name
from redis.commands.core import AsyncScript
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokentail.shared.connections.taken_over import TakenOver, reader_of

Command = Sequence[Any]
_Waiting = tuple["asyncio.Future[list[Any]]", int, list[Any]]  # a caller, how many replies it is owed, those come

_SCRIPTS = frozenset(("EVALSHA", "EVAL", "evalsha", "eval", b"EVALSHA", b"EVAL", b"evalsha", b"eval"))


def slot_of(key: str | bytes) -> int:
    """The Redis Cluster slot of `key` (redis-py's `key_slot`: its hash tag's, else the key's). The one
    rule the round trips route by, and the worker's appends group by (worker/writes/appends.py)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


def key_of(command: Command) -> Any | None:
    """The key a command goes by: a script's first key (EVALSHA, EVAL), any other command's first
    argument (every command sent this way names its key there); None for a command of no key."""
    if command[0] in _SCRIPTS:
        return command[3] if int(command[2]) else None
    return command[1] if len(command) > 1 else None


@functools.cache
def hash_tags() -> tuple[str, ...]:
    """For each slot, a short hash tag in it (`{<tag>}` puts a key there): the first number whose
    digits hash to it. Found once per process (about 110,000 numbers tried; 60 ms)."""
    tags: list[str | None] = [None] * SLOTS
    left, number = SLOTS, 0
    while left:
        digits = b"%d" % number
        slot = key_slot(digits)
        if tags[slot] is None:
            tags[slot] = digits.decode()
            left -= 1
        number += 1
    return cast(tuple[str, ...], tuple(tags))


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


class Joined:
    """What a process's commands on a Redis are sent through: `submit` joins them into round trips
    (`RoundTrips`: one connection; `ClusterRoundTrips`: one per primary of a cluster)."""

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

    def submit(self, commands: Sequence[Command], slots: Sequence[int] | None = None) -> "asyncio.Future[list[Any]]":
        """The replies of `commands` as a future, each error reply as its exception (for a caller that
        does not wait in a task of its own, or keeps each command's error apart). `slots`: each
        command's slot, if the caller has it (`slot_of` its key): on a cluster, not worked out again."""
        raise NotImplementedError


class RoundTrips(Joined):
    """The round trips of one connection: a server's (or a Sentinel setup's primary's), taken from
    its client's pool for good; or a cluster node's (`_NodeRoundTrips`)."""

    def __init__(self, redis: Redis | None) -> None:
        self.redis = redis
        self._pool = None if redis is None else redis.connection_pool
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

    def submit(self, commands: Sequence[Command], slots: Sequence[int] | None = None) -> "asyncio.Future[list[Any]]":
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
        try:
            link.send(b"".join([item for _, packed in asked for item in packed]), sum(owed for _, owed, _ in out))
        except Exception as exc:  # its connection closed under it (a Redis that died as it was opened):
            # no reply will come, nor a `connection_lost` to say so: the round trip fails now, not never.
            self._lost(link, RedisConnectionError(f"Redis connection lost: {exc}"))
            return
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
            connection = await self._connect()
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

    async def _connect(self) -> Connection:
        """The connection, open: the pool's, taken the first time, opened again after it was lost."""
        if self._connection is None:
            pool = cast(ConnectionPool, self._pool)
            self._connection = cast(Connection, await pool.get_connection(*self._checkout))
        else:
            await self._connection.disconnect(nowait=True)
            await self._connection.connect()  # type: ignore[no-untyped-call]
        return self._connection

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


class _NodeRoundTrips(RoundTrips):
    """The round trips of one primary of a cluster, on a connection of its redis-py node
    (`ClusterNode`): one of the node's, so that closing the client closes it, never handed to
    redis-py's commands. redis-py makes its nodes anew each time it reads the slot map, and closes the
    old ones' connections (in tasks of their own): a map read here moves the connection to the new
    node at once (`rehome`), before they run; one that redis-py read itself, after a command of its
    own failed, closed it, and the next round trip opens one of the new node's."""

    def __init__(self, cluster: RedisCluster, name: str) -> None:
        super().__init__(None)
        self.cluster = cluster
        self.name = name  # host:port
        self._node: ClusterNode | None = None  # whose connection it is

    async def _connect(self) -> Connection:
        node = self.cluster.nodes_manager.nodes_cache.get(self.name)
        if node is None:
            raise RedisConnectionError(f"{self.name} is no node of the cluster's slot map")
        connection = self._connection
        if connection is not None and node is self._node:
            await connection.disconnect(nowait=True)
        else:
            connection = self._connection = node.acquire_connection()
            self._node = node
        await connection.connect()  # type: ignore[no-untyped-call]
        return connection

    def rehome(self, node: ClusterNode) -> None:
        """`node` is this primary's now (the slot map read again): its connection becomes the new
        node's, and is not closed with the old one."""
        old, connection = self._node, self._connection
        if old is None or old is node or connection is None:
            return
        if connection in old._connections:
            old._connections.remove(connection)
            node._connections.append(connection)
        self._node = node


class ClusterRoundTrips(Joined):
    """A Redis Cluster's round trips: each command on its slot's primary's (`_NodeRoundTrips`)."""

    REDIRECTS = 16  # the MOVED, ASK and TRYAGAIN a command follows before it fails (redis-py's TTL)
    TRY_AGAIN_SECONDS = 0.05
    READ_MAP_SECONDS = 0.25  # the slot map is read again at most this often (a node failing)

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self._nodes: dict[str, _NodeRoundTrips] = {}  # by address (host:port)
        self._of_slot: dict[int | None, _NodeRoundTrips] = {}  # the slot map's primaries, as met
        self._reading: asyncio.Task[None] | None = None  # the slot map
        self._read_at = -float("inf")

    def submit(self, commands: Sequence[Command], slots: Sequence[int] | None = None) -> "asyncio.Future[list[Any]]":
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        routed = _Routed(self, commands, future)
        if not self.cluster.nodes_manager.slots_cache:  # not initialized yet: once it is
            asyncio.ensure_future(self._first_map(routed, slots))
        else:
            routed.send(range(len(commands)), slots)
        return future

    def trips(self, slot: int | None) -> _NodeRoundTrips:
        """The round trips of the primary of `slot` (None: of no key, the cluster's default node's)."""
        trips = self._of_slot.get(slot)
        if trips is None:
            manager = self.cluster.nodes_manager
            node = manager.default_node if slot is None else manager.get_node_from_slot(slot)
            if node is None:
                raise ClusterError("the cluster's slot map is being read again")
            trips = self._of_slot[slot] = self.node(node.name)
        return trips

    def node(self, name: str) -> _NodeRoundTrips:
        """The round trips of the node at `name` (host:port)."""
        trips = self._nodes.get(name)
        if trips is None:
            trips = self._nodes[name] = _NodeRoundTrips(self.cluster, name)
        return trips

    def moved(self, error: MovedError) -> None:
        """A node answered MOVED: its slot is another primary's (a reshard, a failover). The slot map is
        patched as redis-py patches it, at once."""
        self._of_slot.pop(error.slot_id, None)
        manager = self.cluster.nodes_manager
        manager._moved_exception = error
        try:
            manager.get_node_from_slot(error.slot_id)  # (which applies it)
        except Exception:  # a slot it had not mapped: the map, whole
            self.read_map()

    def read_map(self) -> None:
        """A node failed (a primary down, CLUSTERDOWN): read the slot map again, from any node
        (redis-py's `NodesManager.initialize`), at most every READ_MAP_SECONDS."""
        loop = asyncio.get_running_loop()
        if self._reading is None and loop.time() - self._read_at >= self.READ_MAP_SECONDS:
            self._read_at = loop.time()
            self._reading = asyncio.ensure_future(self._read_map())

    async def map_read(self) -> None:
        """Until the slot map was read again, now (or by the read under way): for another user of the
        client (the stream hub, gateway/live/pubsub.py), so that the round trips keep their
        connections through it, as through their own reads."""
        if self._reading is None:
            self._read_at = asyncio.get_running_loop().time()
            self._reading = asyncio.ensure_future(self._read_map())
        await asyncio.shield(self._reading)

    async def _read_map(self) -> None:
        try:
            await self.cluster.nodes_manager.initialize()
        except Exception:  # no node answers: the next failure tries again
            pass
        finally:  # (nothing awaited from here: the old nodes' closes have not run yet)
            self._reading = None
            self._of_slot.clear()
            known = self.cluster.nodes_manager.nodes_cache
            for name, trips in list(self._nodes.items()):
                if (node := known.get(name)) is not None:
                    trips.rehome(node)
                else:  # no longer a node: its connection is closed with the old one
                    del self._nodes[name]

    async def _first_map(self, routed: "_Routed", slots: Sequence[int] | None) -> None:
        try:
            await self.cluster.initialize()
        except Exception as exc:
            routed.fail(exc)
            return
        routed.send(range(len(routed.commands)), slots)


class _Routed:
    """One caller's commands on a cluster: each sent to the primary of its slot, those of one primary
    in one `submit` of its round trips; the replies put back in order, those MOVED, ASK or TRYAGAIN
    sent again (at most REDIRECTS times), then the caller's future given them."""

    __slots__ = ("cluster", "commands", "replies", "future", "waiting", "again", "asking", "hops", "later")

    def __init__(self, cluster: ClusterRoundTrips, commands: Sequence[Command], future: "asyncio.Future[list[Any]]"):
        self.cluster = cluster
        self.commands = commands
        self.replies: list[Any] = [None] * len(commands)
        self.future = future
        self.waiting = 0  # the nodes whose replies are still to come
        self.again: list[int] = []  # sent again, once every reply of this pass is in
        self.asking: dict[int, str] = {}  # of those, asked of another node first (ASK)
        self.hops = 0
        self.later = False  # a TRYAGAIN among them: after a short wait

    def send(self, indices: Sequence[int], slots: Sequence[int] | None = None) -> None:
        cluster, commands, asking = self.cluster, self.commands, self.asking
        of_slot = cluster._of_slot
        groups: dict[_NodeRoundTrips, list[int]] = {}
        for i in indices:
            try:
                if asking and (name := asking.get(i)) is not None:
                    trips = cluster.node(name)
                elif slots is not None:
                    trips = of_slot.get(slots[i]) or cluster.trips(slots[i])
                else:
                    key = key_of(commands[i])
                    trips = cluster.trips(None if key is None else slot_of(key))
            except Exception as exc:  # no primary for its slot (SlotNotCoveredError): an outage
                self.replies[i] = exc
                cluster.read_map()
                continue
            if (group := groups.get(trips)) is None:
                group = groups[trips] = []
            group.append(i)
        self.asking = {}
        self.waiting = len(groups)
        if not groups:
            self._done()
            return
        for trips, group in groups.items():
            asked = bool(asking) and any(i in asking for i in group)
            sent = _with_asking(commands, group) if asked else [commands[i] for i in group]
            trips.submit(sent).add_done_callback(functools.partial(self._back, group, asked))

    def _back(self, group: list[int], asked: bool, sent: "asyncio.Future[list[Any]]") -> None:
        """One primary's replies (or the error of its round trip: its commands' each)."""
        replies: list[Any] | BaseException = (
            asyncio.CancelledError() if sent.cancelled() else sent.exception() or sent.result()
        )
        if isinstance(replies, BaseException):
            replies = [replies] * len(group)
            self.cluster.read_map()
        elif asked:  # each command after its ASKING's OK
            replies = replies[1::2]
        for i, reply in zip(group, replies, strict=True):
            if isinstance(reply, AskError):  # (and MovedError, one of them)
                if isinstance(reply, MovedError):
                    self.cluster.moved(reply)
                else:
                    self.asking[i] = get_node_name(reply.host, reply.port)
                self.again.append(i)
            elif isinstance(reply, TryAgainError):
                self.later = True
                self.again.append(i)
            else:
                if isinstance(reply, ClusterDownError):
                    self.cluster.read_map()
                self.replies[i] = reply
        self.waiting -= 1
        if not self.waiting:
            self._done()

    def _done(self) -> None:
        again, self.again = self.again, []
        if again and self.hops < self.cluster.REDIRECTS and not self.future.done():
            self.hops += 1
            if self.later:
                self.later = False
                asyncio.get_running_loop().call_later(self.cluster.TRY_AGAIN_SECONDS, self.send, again)
            else:
                self.send(again)
            return
        for i in again:
            self.replies[i] = ClusterError(f"still moved after {self.hops} redirections")
        if not self.future.done():
            self.future.set_result(self.replies)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_result([error] * len(self.commands))


def _with_asking(commands: Sequence[Command], group: list[int]) -> list[Command]:
    """The commands of `group`, each after an ASKING (of those of a node that are not asked of it, as
    of those that are: ASKING lets the next command alone reach a slot the node is importing)."""
    return [command for i in group for command in (("ASKING",), commands[i])]


_of_client: "weakref.WeakKeyDictionary[Redis | RedisCluster, Joined]" = weakref.WeakKeyDictionary()


def round_trips(redis: Redis | RedisCluster) -> Joined:
    """The round trips of `redis`: one per client, so that everything the process sends on it is joined."""
    trips = _of_client.get(redis)
    if trips is None:
        if isinstance(redis, RedisCluster):
            trips = _of_client[redis] = ClusterRoundTrips(redis)
        else:
            trips = _of_client[redis] = RoundTrips(cast(Redis, redis))
    return trips
