"""The stream hub's notifications connections (gateway/live/hub.py): one to the Redis, or one per
primary of a Redis Cluster (whose sessions notify on their shard: SSUBSCRIBE), each subscribed to the
channels of the sessions followed in this process.

The connections are redis-py's (connect, AUTH, SELECT, TLS, keepalive, Sentinel: all its own),
read, once open, by a protocol of the hub's (`_Replies`, shared/connections/taken_over.py): each
network read is parsed by hiredis in C and handled whole in its callback, the notifications of one
session in one read together.
"""

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, cast

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection

from tokentail.gateway import metrics
from tokentail.gateway.live.subscription import Channel, Link
from tokentail.shared.connections.outage import is_outage
from tokentail.shared.connections.round_trips import ClusterRoundTrips, round_trips
from tokentail.shared.connections.taken_over import TakenOver
from tokentail.shared.plumbing.logs import RateLimitedLogger

logger = logging.getLogger(__name__)
outage_log = RateLimitedLogger(logger, every_seconds=30)

RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0)
_MESSAGES = frozenset((b"message", b"smessage"))  # a notification, on a channel or a shard channel


class _Replies(TakenOver):
    """Reads one of the hub's connections once redis-py has opened it: each network read is parsed by
    hiredis, in C, and handled whole in this callback, with no task woken and nothing awaited per
    message. `lost` fails when the connection ends (or brought what is not Redis's protocol)."""

    def __init__(self, pubsub: "PubSub", link: Link, connection: AbstractConnection) -> None:
        self._pubsub = pubsub
        self._link = link
        self._parser = hiredis.Reader()
        super().__init__(connection)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            self._pubsub.on_replies(self._link, self._parser)
        except Exception as exc:  # not Redis's protocol, or the hub's own fault: read on a new connection
            self._end(exc)
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or ConnectionError("Redis closed the stream hub's connection"))
        super().connection_lost(exc)

    def _end(self, exc: BaseException) -> None:
        if not self.lost.done():  # (cancelled when the hub closes: its listener no longer waits)
            self.lost.set_exception(exc)


class PubSub:
    """The hub's notifications connections: one to the Redis, or one per primary of a Redis Cluster
    (whose sessions notify on their shard: SSUBSCRIBE), each subscribed to the channels it hears."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        channels: dict[bytes, Channel],
        notified: Callable[[Channel, list[bytes]], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        read: Callable[[], None],
    ) -> None:
        """`channels`: the hub's, by name; `notified`: told of a session's notifications that came
        together; `spawn`: runs work of its own; `read`: told when a network read was handled whole."""
        self._redis = redis
        self._channels = channels
        self._notified = notified
        self._spawn = spawn
        self._read_handled = read
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._subscribe, self._unsubscribe = (
            (b"SSUBSCRIBE", b"SUNSUBSCRIBE") if self._cluster else (b"SUBSCRIBE", b"UNSUBSCRIBE")
        )
        self.links: dict[str, Link] = {}

    async def start(self) -> None:
        if self._cluster is not None:
            await self._cluster.initialize()  # the slot map, to route each session to its shard

    def tasks(self) -> list[asyncio.Task[None]]:
        return [link.task for link in self.links.values() if link.task is not None]

    def route(self, channel: Channel) -> None:
        """Subscribe the channel on the connection that hears it: the one connection, or the one to
        the primary that holds its slot in a cluster."""
        if self._cluster is None:
            address, new_connection = "", self._connection_to_redis
        else:
            node = self._cluster.get_node_from_key(channel.name)
            address, new_connection = node.name, functools.partial(node.connection_class, **node.connection_kwargs)
        link = self.links.get(address)
        if link is None:
            link = self.links[address] = Link(address, new_connection)
            link.task = asyncio.create_task(self._listen(link))
        channel.link = link
        link.channels.add(channel)
        self._send(link, self._subscribe, [channel])

    def unroute(self, channel: Channel) -> None:
        if channel.link is not None:
            channel.link.channels.discard(channel)
            self._send(channel.link, self._unsubscribe, [channel])

    def _connection_to_redis(self) -> AbstractConnection:
        pool = cast(Redis, self._redis).connection_pool
        connection: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        return connection

    async def _reroute(self, channels: Iterable[Channel]) -> None:
        """The cluster moved these channels' slots, or lost a primary: route them again, by a fresh
        slot map. Their followers read what they missed once subscribed again."""
        assert self._cluster is not None
        # An unreachable cluster: the next failure tries again. (Read through the client's round
        # trips, which keep their connections through it: the store's reads share this client.)
        await cast(ClusterRoundTrips, round_trips(self._cluster)).map_read()
        for channel in list(channels):
            if self._channels.get(channel.name) is channel:
                if channel.link is not None:
                    channel.link.channels.discard(channel)
                self.route(channel)

    async def _listen(self, link: Link) -> None:
        failures = 0
        while True:
            if failures and self._forgot_idle(link):
                return
            connection = link.new_connection()
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
                replies = self._read(link, connection)
                link.connection, failures = connection, 0
                link.awaiting.clear()
                self._send(link, self._subscribe, list(link.channels))
                await replies.lost
            except Exception as exc:
                if not is_outage(exc):
                    logger.exception("the stream hub's connection failed; reconnecting")
                else:
                    outage_log.warning("the stream hub lost Redis (%s); reconnecting", exc)
                metrics.HUB_RECONNECTS.inc()
            finally:
                link.connection = None
                await connection.disconnect(nowait=True)
            if self._cluster is not None and failures:
                # Still failing after a retry: the primary may have gone (failover): look again.
                await self._reroute(link.channels)
                if self._forgot_idle(link):
                    return
            await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
            failures += 1

    def _read(self, link: Link, connection: AbstractConnection) -> _Replies:
        """From now on, what comes on `connection` is read by the hub's own protocol (a `TakenOver`)."""
        return _Replies(self, link, connection)

    def _forgot_idle(self, link: Link) -> bool:
        """In a cluster, a failing link whose channels all left (moved to other primaries, or their
        followers ended) is dropped, not tried again: a dead node is not reconnected to for ever."""
        if self._cluster is None or link.channels:
            return False
        if self.links.get(link.address) is link:
            del self.links[link.address]
        return True

    def _send(self, link: Link, command: bytes, channels: list[Channel]) -> None:
        # Without a connection there is nothing to send: the next connection subscribes to every
        # channel there is then. A failed send breaks the connection, which the listener sees.
        # In a cluster, one channel per command: a command's channels must share a slot. What a loop
        # step asks goes in one write at its end (streams opened and closed together).
        connection = link.connection
        if connection is None or not channels:
            return
        if command == self._subscribe:
            link.awaiting.extend(channels)
        per_command = 1 if self._cluster is not None else 1000
        names = [channel.name for channel in channels]
        if not link.outbox:
            asyncio.get_running_loop().call_soon(self._flush, link, connection)
        for start in range(0, len(names), per_command):
            link.outbox += connection.pack_command(command, *names[start : start + per_command])

    @staticmethod
    def _flush(link: Link, connection: AbstractConnection) -> None:
        outbox, link.outbox = link.outbox, []
        if link.connection is connection:  # (a new connection subscribes to every channel itself)
            connection._writer.write(b"".join(outbox))  # type: ignore[union-attr]

    def on_replies(self, link: Link, parser: hiredis.Reader) -> None:
        """Every reply one network read of `link`'s connection completed, in order. The notifications
        of one session that come one after the other (as an append's do) are taken together, as one
        chunk: one write to each client that follows it directly. What the hub wrote is counted once."""
        channels, notified = self._channels, self._notified
        channel: Channel | None = None
        payloads: list[bytes] = []
        while (reply := parser.gets()) is not False:
            if reply.__class__ is list and reply[0] in _MESSAGES:
                if (of := channels.get(reply[1])) is not channel:
                    if channel is not None and payloads:
                        notified(channel, payloads)
                    channel, payloads = of, []
                payloads.append(reply[2])
                continue
            if channel is not None and payloads:
                notified(channel, payloads)
            channel, payloads = None, []
            if isinstance(reply, hiredis.ReplyError):
                self._refused(link, reply)
            else:
                self._on_reply(link, reply)
        if channel is not None and payloads:
            notified(channel, payloads)
        self._read_handled()

    def _refused(self, link: Link, error: hiredis.ReplyError) -> None:
        """An error reply: on a cluster, a MOVED for a channel whose slot this node no longer holds."""
        if self._cluster is None or not link.awaiting:
            raise error  # not one the hub asks for: a new connection subscribes again
        channel = link.awaiting.popleft()
        logger.info("the stream hub moves a channel (%s)", error)
        self._spawn(self._reroute([channel]))

    def _on_reply(self, link: Link, reply: list[bytes]) -> None:
        kind = reply[0]
        if kind == b"subscribe" or kind == b"ssubscribe":
            channel = link.awaiting.popleft()
            if channel.ready:
                # Subscribed again (the connection came back, the slot moved): what was sent
                # meanwhile was lost.
                for subscription in channel.subscriptions:
                    metrics.HUB_CATCH_UPS.labels("reconnect").inc()
                    subscription.fall_behind()
            else:
                channel.ready = True
                for subscription in channel.subscriptions:
                    subscription._wake()
        elif kind == b"sunsubscribe":
            moved = self._channels.get(reply[1])
            if moved is not None and moved.link is link:
                # Not asked for: the cluster moved the channel's slot to another primary.
                self._spawn(self._reroute([moved]))
