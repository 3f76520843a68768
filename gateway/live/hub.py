"""One reader per gateway process: every open stream is fed from one pub/sub connection (one per
primary on a Redis Cluster, where each session notifies on its shard).

append.lua publishes each event it appends, as `<seq> <ts> <type> <data>`, on a channel named like
the session's stream key. The hub subscribes to the sessions that have at least one follower in
this process, reads each event once, and hands the same events to every follower: framed once per
encoding for those it writes to straight (below), one `Chunk` for the others. Open streams cost no
Redis connection and no read of their own: the hub's connection, plus short catch-up reads from a
small pool, serve them all, and the cost of one notification does not grow with the number of open
streams.

Pub/sub delivers only while subscribed, so a follower that is not yet (or no longer) in step with
the channel reads from the stream instead (`Subscription.live` is False) while the hub keeps the
notifications that arrive meanwhile in its spill; once a read reaches the end of the stream, the
spill continues exactly after it, and the follower is live. The same path, never a silent skip,
serves a follower that joins, one whose client reads too slowly (past `BUFFER_BYTES` waiting, it
drops what is waiting and reads it again from Redis when it can take it), and every follower after
the hub's connection came back (notifications sent meanwhile were lost).

A live follower whose reader waits with nothing pending, and whose client's connection offers a
direct write (gateway/protocol.py's `DirectBody`), holds a `Direct`: then the hub writes the events
that continue it and end no run straight to that client, in the callback that read them, with no
task woken, their bytes made once per encoding, and no `Chunk` made unless another follower needs
one. Everything else (a run's end, a hole, a client whose connection is paused, a gap, a heartbeat,
the end) wakes the reader, which takes it the usual way; its `Direct` is dropped on every wake and
given again when it waits, so a direct write never overtakes what its task sends.

The connections are redis-py's (connect, AUTH, SELECT, TLS, keepalive, Sentinel: all its own),
read, once open, by a protocol of the hub's (`_Replies`): each network read is parsed by hiredis
in C and handled whole in its callback, the notifications of one session in one read as one chunk.
"""

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine, Iterable
from typing import Any

from prometheus_client import Counter

from tokentail.gateway import metrics
from tokentail.gateway.live.chunk import TERMINAL, Chunk, columns_of
from tokentail.gateway.live.first_delta import DELTA, FirstDeltas, tell_first_deltas
from tokentail.gateway.live.pubsub import PubSub
from tokentail.gateway.live.subscription import Channel, Subscription
from tokentail.shared.connections.outage import is_outage
from tokentail.shared.connections.redis_clients import sessions_client
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.archive import Archive
from tokentail.shared.store.reads import SESSION_GONE, Entry, SessionStore, stored_event
from tokentail.shared.vocabulary.events import EventType

logger = logging.getLogger(__name__)

_RUN_COMPLETED = EventType.RUN_COMPLETED.encode()
_OUTPUT = b'"output":'  # in a completed run's data as the hubs are told it
# A Redis that vanished without closing the connection is found by TCP keepalive, within about 25 s.
KEEPALIVE = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}


class StreamHub:
    """The live reads of one gateway process: `subscribe` a follower, `unsubscribe` it when done."""

    def __init__(self, settings: Settings, read_connections: int, archive: "Archive | None" = None) -> None:
        # Catch-up reads and positions: a small pool. No socket timeout, on purpose: with one,
        # redis-py wraps each command's send in `asyncio.wait_for`, which on Python 3.11 swallows a
        # cancellation that lands as the send completes (python/cpython#86296), and a feed whose
        # client left would go on holding its stream slot. A Redis that is only slow is waited for.
        self._redis = sessions_client(
            settings, read_connections, wait=None, socket_keepalive=True, socket_keepalive_options=KEEPALIVE
        )
        self.store = SessionStore(self._redis, settings, archive)
        self.first_deltas = FirstDeltas(self.store)  # the runs' first deltas its followers write
        self._heartbeat = settings.sse_heartbeat_seconds
        self._channels: dict[bytes, Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick = 0
        self._stopped = False
        self._sent: dict[Counter, int] = {}  # events written straight to clients, by transport, not yet counted
        self._pubsub = PubSub(self._redis, self._channels, self._notified, self._spawn, self._count_sent)

    async def start(self) -> None:
        await self._pubsub.start()
        self._spawn(self._beat())

    def subscribe(self, session_id: str, channel_name: str | None = None) -> Subscription:
        """A follower of the session's channel; or of the channel `channel_name`, whose only messages are
        `SESSION_GONE` (a ping: look again), such as an ACP connection's outbox's
        (shared/features/acp_connections.py)."""
        name = (channel_name or self.store.keys.session(session_id).events).encode()
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel(session_id, name)
            metrics.HUB_CHANNELS.inc()
            self._pubsub.route(channel)
        subscription = Subscription(channel, self._tick)
        if self._stopped:
            subscription.closed = True
        channel.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.closed = True
        channel = subscription.channel
        channel.subscriptions.discard(subscription)
        if not channel.subscriptions and self._channels.get(channel.name) is channel:
            del self._channels[channel.name]
            metrics.HUB_CHANNELS.dec()
            self._pubsub.unroute(channel)

    @property
    def stopping(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """The gateway is stopping: every follower ends its stream now (its client comes back elsewhere)."""
        self._stopped = True
        for subscription in self._subscriptions():
            subscription.close()

    async def aclose(self) -> None:
        self.stop()
        tasks = [*self._tasks, *self._pubsub.tasks()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._redis.aclose()

    # -- notifications to chunks ---------------------------------------------------------------

    def _notified(self, channel: Channel, payloads: list[bytes]) -> None:
        """A session's notifications that came together, in order: its events (`<seq> <ts> <type>
        <data>`, made entries as a read's are, one chunk of them), or its end."""
        entries: list[Entry] = []
        size, terminal, delta = 0, False, None
        for payload in payloads:
            if payload == SESSION_GONE:
                if entries:
                    self._deliver(channel, entries, size, terminal, delta)
                    entries, size, terminal, delta = [], 0, False, None
                for subscription in channel.subscriptions:
                    subscription.ping()  # it checks on its session, finds it gone, and ends now
                continue
            seq, ts, type_, data = payload.split(b" ", 3)
            # A completed run's end comes with its output (append.lua tells it so), but from a worker of
            # a version before that: its output is read from its record (`_complete`).
            if channel.held is None and (type_ != _RUN_COMPLETED or _OUTPUT in data):
                entries.append([seq, [b"type", type_, b"data", data, b"ts", ts]])
                size += len(data)
                if type_ == DELTA:
                    delta = data
                elif type_ in TERMINAL:
                    terminal = True
                continue
            if entries:
                self._deliver(channel, entries, size, terminal, delta)
                entries, size, terminal, delta = [], 0, False, None
            event = stored_event((int(seq), type_, data, int(ts)))
            if channel.held is not None:
                channel.held.append(event)
            else:
                # The stream keeps a completed run's output in its record: add it back (one read per
                # gateway), holding the session's later events until it is done, so order is kept.
                channel.held = [event]
                self._spawn(self._complete(channel))
        if entries:
            self._deliver(channel, entries, size, terminal, delta)

    async def _complete(self, channel: Channel) -> None:
        try:
            while channel.held:
                events, channel.held = channel.held, []
                chunk = Chunk(await self.store.with_outputs(channel.session_id, events))
                for subscription in channel.subscriptions:  # (a run's end: each follower's reader takes it)
                    subscription.offer(chunk, self._tick)
        except Exception as exc:
            if not is_outage(exc):
                logger.exception("could not add a completed run's output")
            for subscription in channel.subscriptions:
                subscription.fall_behind()  # each reads it from Redis when it can
        finally:
            channel.held = None

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _deliver(self, channel: Channel, entries: list[Entry], size: int, terminal: bool, delta: bytes | None) -> None:
        """Live events of `channel`'s session (as entries), to each follower: written straight to the
        client of each that holds a `Direct` and is owed exactly these (their bytes made once per
        encoding), else as one `Chunk` (made once, if any follower needs it). `size`: their data's
        bytes; `terminal`: one of them ends a run; `delta`: the data of the last text delta, if any."""
        first = int(entries[0][0])
        last = first if len(entries) == 1 else int(entries[-1][0])
        tick, sent, count = self._tick, self._sent, len(entries)
        chunk, framer, body, bodies, marks = None, None, b"", None, False
        for subscription in channel.subscriptions:
            direct = subscription.direct
            if direct is not None and not terminal and subscription.queued == first - 1:
                # (Holding a `Direct`, it is live, open, and has nothing pending: see `wait` and `_wake`.)
                if (frames := direct.frames) is not framer:
                    if framer is not None:  # followers in another encoding too: each encoding's, once
                        bodies = bodies or {framer: body}
                        body = bodies.get(frames) or bodies.setdefault(frames, frames(entries))
                    else:
                        body = frames(entries)
                    framer = frames
                if subscription.writer.write(body):  # type: ignore[union-attr]  # (held with `direct`)
                    subscription.queued = subscription.written = last
                    subscription.last_tick = tick
                    counter = direct.sent
                    sent[counter] = sent.get(counter, 0) + count
                    marks = marks or direct.marks_deltas
                    continue
            if chunk is None:
                chunk = Chunk.made(entries, first, last, size, terminal)
            subscription.offer(chunk, tick)
        # Written to a client by the hub: it tells of a run's first delta, as a feed would (unless all
        # these deltas are of the run it told of last: the last one says).
        if marks and delta is not None and not delta.startswith(channel.delta_head):
            types, datas = columns_of(entries)
            channel.delta_head = tell_first_deltas(
                self.first_deltas, channel.session_id, channel.delta_head, types, datas
            )

    def _count_sent(self) -> None:
        if self._sent:
            for counter, count in self._sent.items():
                counter.inc(count)
            self._sent.clear()

    # -- heartbeats ----------------------------------------------------------------------------

    async def _beat(self) -> None:
        # Half-heartbeat ticks: a follower with nothing sent for two ticks pings. One pass over the
        # followers per tick, however many there are, instead of a timer per follower.
        while True:
            await asyncio.sleep(self._heartbeat / 2)
            self.tick()

    def tick(self) -> None:
        """Half a heartbeat passed: each follower sent nothing for two ticks (by the hub's writes or
        its own) pings."""
        self._tick += 1
        for subscription in self._subscriptions():
            if self._tick - subscription.last_tick >= 2:
                subscription.last_tick = self._tick
                subscription.ping()

    def _subscriptions(self) -> Iterable[Subscription]:
        return [s for channel in list(self._channels.values()) for s in channel.subscriptions]
