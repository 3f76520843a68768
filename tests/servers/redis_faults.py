"""Faults a Redis can have, made on purpose: full (over `maxmemory`, with `noeviction`), paused,
losing its last writes, cut off from its clients (`FaultyLink`)."""

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import urllib.parse
from collections.abc import AsyncIterator

from redis.asyncio import Redis, RedisCluster

from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys


async def fill(redis: Redis) -> None:
    """From now on Redis refuses every write that may grow it, as when it filled up: its limit is
    set below what it holds already. Reads and deletes go on."""
    await redis.config_set("maxmemory-policy", "noeviction")
    await redis.config_set("maxmemory", 1)


async def drain(redis: Redis) -> None:
    """Lift the limit again."""
    await redis.config_set("maxmemory", 0)


@contextlib.asynccontextmanager
async def full(redis: Redis) -> AsyncIterator[None]:
    await fill(redis)
    try:
        yield
    finally:
        await drain(redis)


def pause(pid: int) -> None:
    """Freeze the redis-server process (as a VM pause or a long fork would): it answers nothing."""
    os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def rolled_back_after(redis: Redis | RedisCluster, settings: Settings, session_id: str) -> AsyncIterator[None]:
    """What is written inside the block to the session's events and meta, and to every other key of
    tokentail's (a worker's count of its joined calls: worker/writes/appends.py), is lost when it
    ends, as a failover to a replica that had not received it yet loses it: all of it, since the
    replica has a prefix of what the primary was sent. The session's runs and lease stay (they
    changed nothing inside the block that a test reads). On a Redis Cluster, the session's primary
    fails over: the keys on it (a worker's count of its calls in each slot there too), no other's."""
    own: Redis | None = None
    if isinstance(redis, RedisCluster):
        await redis.initialize()
        node = redis.get_node_from_key(Keys(settings.key_prefix).session(session_id).events)
        redis = own = Redis(host=node.host, port=int(node.port))
    try:
        session = Keys(settings.key_prefix).session(session_id)
        kept = {session.runs, session.lease}
        names = {key async for key in redis.scan_iter(match=f"{settings.key_prefix}:*")} - {k.encode() for k in kept}
        saved = {key: await redis.dump(key) for key in names}
        yield
        after = {key async for key in redis.scan_iter(match=f"{settings.key_prefix}:*")} - {k.encode() for k in kept}
        # (A cluster's node takes no MULTI of keys in several slots.)
        async with redis.pipeline(transaction=own is None) as pipe:
            for key in after - saved.keys():
                pipe.delete(key)
            for key, dumped in saved.items():
                if dumped is not None:
                    pipe.restore(key, 0, dumped, replace=True)
            await pipe.execute()
    finally:
        if own is not None:
            await own.aclose()


class FaultyLink:
    """A TCP link to a Redis that cuts its connections on purpose, for clients given `url` instead of
    the Redis's own: as a network, a proxy or a restarted load balancer cuts them.

    - `cut(pattern)`: the next connection that sends a command holding `pattern` (a script's sha, a
      key) is cut as it sends it: before Redis gets it (`reply_lost=False`: nothing ran), or once
      Redis answered it (`reply_lost=True`: it ran, and the client never learns so); the next `times`
      such connections, or every one until `stop_cutting()`.
    - `drop_replies(share)`: from then on, each reply Redis sends is lost with that probability, and its
      connection cut with it (a reply dropped from a stream leaves no connection usable).

    The client sees either as a connection error (redis-py's ConnectionError) on the call in flight.
    """

    def __init__(self, target_url: str) -> None:
        parsed = urllib.parse.urlsplit(target_url)
        self._target = (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self._target_url = parsed
        self._server: asyncio.Server | None = None
        self._cuts: list[_Cut] = []
        self._drop_share = 0.0
        self._random = random.Random(52)
        self._connections: set[asyncio.Task[None]] = set()
        self.replies_dropped = 0

    async def start(self) -> "FaultyLink":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the link first"
        port = self._server.sockets[0].getsockname()[1]
        return self._target_url._replace(netloc=f"127.0.0.1:{port}").geturl()

    def cut(self, pattern: bytes, *, reply_lost: bool, times: int = 1) -> "_Cut":
        """Cut the next `times` connections that send `pattern`; its `done` is set once one was cut."""
        cut = _Cut(pattern, reply_lost, times)
        self._cuts.append(cut)
        return cut

    def stop_cutting(self) -> None:
        self._cuts.clear()

    def drop_replies(self, share: float) -> None:
        self._drop_share = share

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.close()
            self._connections.discard(task)
            return
        link = _Connection(client_writer, server_writer)
        try:
            await asyncio.gather(self._requests(client_reader, link), self._replies(server_reader, link))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()
            self._connections.discard(task)

    async def _requests(self, reader: asyncio.StreamReader, link: "_Connection") -> None:
        tail = b""  # a pattern may straddle two reads
        while data := await reader.read(65536):
            seen, tail = tail + data, data[-64:]
            cut = next((cut for cut in self._cuts if cut.pattern in seen), None)
            if cut is not None:
                cut.made += 1
                if cut.made == cut.times:
                    self._cuts.remove(cut)
                if not cut.reply_lost:
                    link.close()
                    cut.done.set()
                    return
                link.lose_next_reply = cut.done
            link.server.write(data)
            await link.server.drain()
        link.close()

    async def _replies(self, reader: asyncio.StreamReader, link: "_Connection") -> None:
        while data := await reader.read(65536):
            if link.lose_next_reply is not None or (self._drop_share and self._random.random() < self._drop_share):
                self.replies_dropped += 1
                link.close()
                if link.lose_next_reply is not None:
                    link.lose_next_reply.set()
                return
            link.client.write(data)
            await link.client.drain()
        link.close()


@dataclasses.dataclass
class _Cut:
    pattern: bytes
    reply_lost: bool
    times: int
    made: int = 0  # connections cut so far
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class _Connection:
    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client, self.server = client, server
        self.lose_next_reply: asyncio.Event | None = None

    def close(self) -> None:
        for writer in (self.client, self.server):
            if not writer.is_closing():
                writer.close()
