"""The per-token path of a worker process: every run's appends, sent and settled a tick at a time.

Writers (worker/writes/writer.py) join a run's text into events, in windows that close on one grid of ticks
for the whole process (`period`, 5 ms). At a tick, `AppendTicks` asks every writer whose window closed
for its events (`EventWriter.take`), writes all of them as one call of append_at.lua (up to
`JOINED_CALLS` runs a call, a tick's calls in one round trip on the process's connection:
shared/connections/round_trips.py), and settles every reply in one pass (`EventWriter.landed`): no future, task
or lock per append, and one round trip in flight, so the ticks that pass while it is out join the
next. A busy process (a tick that called `BUSY` writers or more) joins every other tick of its grid
until a tick is quieter: twice the appends per call, half the round trips.

append_at.lua checks no lease and reads nothing: per event it is one XADD at the id the worker
expects, and one PUBLISH. Redis refuses an append whose first id is not past the stream's last (another
writer's event took it, a fence: lib/seqs.lua, a session deleted), and it comes back refused. Such
an append, and every append of a run the process's count of calls (`JoinCounter`) does not vouch
for, goes in the next round trip's checked call (append_events.lua: the lease, a try sent again,
events Redis lost), which answers a run that lost its lease FENCED (`LeaseLost`) and one whose events
Redis lost LOST (`WritesLost`: the writer appends them again, worker/writes/lost_writes.py).

On a Redis Cluster a call's keys must share a slot: the process keeps a count per slot it appends to,
in a key of that slot (`JoinCounter.count`), and a tick's appends go as one call per slot (lean or
checked, as on one Redis, its runs vouched for by their slot's count), the calls of every slot of a
primary in one write on its connection (shared/connections/round_trips.py `ClusterRoundTrips`), the
primaries' round trips together: the ticks' one round trip out is back when every primary's is.
"""

import asyncio
import functools
import hashlib
import logging
import math
import secrets
from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.connections.round_trips import hash_tags, round_trips
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.runs import AppendAt, AppendEvents, raise_fenced
from tokentail.worker.writes.run_writes import RunLease, outcome

logger = logging.getLogger(__name__)

# The most appends joined into one script call: Redis runs a script without serving anyone else, and
# sends what it published (the gateways' notifications) only once it returns.
JOINED_CALLS = 64
Events = Sequence[tuple[str, str]]  # (type, data JSON)


class TickWriter(Protocol):
    """A run's writer as the ticks see it (worker/writes/writer.py's `EventWriter`): asked at its tick,
    asked for its events, told what became of them."""

    @property
    def lease(self) -> RunLease: ...

    def on_tick(self) -> bool: ...

    def take(self) -> Events | None: ...

    def landed(self, reply: int | BaseException) -> None: ...


_Group = list[tuple[TickWriter, Events]]


class Count:
    """One count of a process's joined calls: its key, the count the process expects Redis to be at
    (None: unknown), and its era, which moves each time it is found off (the runs it vouched for
    before are not, since)."""

    __slots__ = ("key", "slot", "expected", "era")

    def __init__(self, key: str, slot: int) -> None:
        self.key = key
        self.slot = slot  # on a Redis Cluster, the key's (and its runs'); else a run's, any
        self.expected: int | None = None
        self.era = 0


class JoinCounter:
    """The count of the joined calls a process sent, kept in a key of its own that each call
    increments (append_at.lua, append_events.lua), and the count the process expects Redis to be at.
    A call that finds it so knows Redis holds every call of the process before it, and none the
    process did not hear back from: none of its appends is a try sent again, and Redis lost none of
    what they wrote (it loses a suffix of what it was sent: a replica's lag, the AOF's last second).

    That covers the events of the runs whose appends were checked whole since the count was last
    found off (`trusted`); a run idle when it was found off may have lost events then. So a run's
    append goes the lean way only while it is trusted, and a checked call makes its runs trusted.
    Unknown at first, after a call that failed, and for runs past `TRUSTED` (forgotten all at once):
    everything is checked, and known again.

    On a Redis Cluster a script's keys share a slot, and each primary loses a suffix of its own: the
    process keeps a count per slot it appends to (`count`), in a key tagged with a hash tag of that
    slot (shared/connections/round_trips.py `hash_tags`, found once), and a run is vouched for by its
    slot's count alone. On one Redis every run's is the one count."""

    TRUSTED = 100_000

    def __init__(self, keys: Keys, writer_id: str, cluster: bool = False) -> None:
        self._keys = keys
        self._writer_id = writer_id
        self._cluster = cluster
        self.key = keys.joined_count(writer_id)  # (the one count's, on one Redis)
        self._counts: dict[int, Count] = {}  # by slot on a cluster; else the one, at 0
        self._trusted: dict[str, int] = {}  # session id -> the era of its count when it was checked whole
        self.one = None if cluster else self.count(0)  # (on one Redis, every run's)

    def count(self, slot: int) -> Count:
        """The count that vouches for the runs of `slot` (their sessions' keys' slot)."""
        place = slot if self._cluster else 0
        count = self._counts.get(place)
        if count is None:
            key = self._keys.joined_count(self._writer_id, hash_tags()[slot]) if self._cluster else self.key
            count = self._counts[place] = Count(key, slot)
        return count

    def vouches_for(self, session_id: str, count: Count) -> bool:
        return count.expected is not None and self._trusted.get(session_id) == count.era

    def counted(self, count: Count, sent: int | None, got: int, checked: list[str]) -> None:
        """A call of `count` that expected it at `sent` came back with `got`; `checked`: the sessions
        whose appends it checked whole (and that were not refused)."""
        if sent is None or got != sent + 1:
            count.era += 1  # Redis may have lost what any of its runs wrote: each is checked again
        if len(self._trusted) > self.TRUSTED:
            self._trusted.clear()
        era = count.era
        for session_id in checked:
            self._trusted[session_id] = era
        count.expected = got

    def unknown(self, count: Count | None = None) -> None:
        """A call of `count` (of any, if None) may have gone through unheard of."""
        for each in self._counts.values() if count is None else (count,):
            each.expected = None


class _Call:
    """One script call of a round trip: its count, its appends, and what its count was expected at."""

    __slots__ = ("count", "lean", "group", "expected")

    def __init__(self, count: Count, lean: bool, group: _Group, expected: int | None) -> None:
        self.count = count
        self.lean = lean
        self.group = group
        self.expected = expected


class TickGrid:
    """The coalescing windows of every writer of a process, on one grid of ticks: a window that ends
    between two ticks ends at the later one (at most `period` late), so the writers whose windows end
    close together append at the same instant, in one round trip. One timer per tick, not one per
    writer. What a tick's writers send, and how, is `_send`'s (AppendTicks: to Redis)."""

    BUSY = 32

    def __init__(self, interval: float, period: float = 0.005) -> None:
        self.interval = interval  # a writer's window
        self.period = period
        self._due: dict[int, list[TickWriter]] = {}
        self._coarse = False  # busy: every other tick of the grid
        self._ready: list[TickWriter] = []  # asked to go in the next round trip
        self._sending = False  # a round trip is out, or asked for this loop step
        self._loop: asyncio.AbstractEventLoop | None = None  # (asked once: Python 3.11 asks getpid() each time)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.get_running_loop()
        return self._loop

    def join(self, writer: TickWriter, wait: float) -> int:
        """Ask `writer` for its events (`on_tick`) at the first tick at least `wait` seconds from now;
        which tick (its loop time: that times `period`)."""
        loop = self.loop
        tick = math.ceil((loop.time() + wait) / self.period)
        if self._coarse and tick % 2:
            tick += 1
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = []
            loop.call_at(tick * self.period, self._tick, tick)
        due.append(writer)
        return tick

    def soon(self, writer: TickWriter) -> None:
        """`writer`'s events go in the next round trip: once this loop step is over (what else comes in
        it goes with them), or when the round trip out comes back."""
        self._ready.append(writer)
        if not self._sending:
            self._sending = True
            self.loop.call_soon(self._send)

    def _tick(self, tick: int) -> None:
        due = self._due.pop(tick)
        self._coarse = len(due) >= self.BUSY
        self._ready += [writer for writer in due if writer.on_tick()]
        if self._ready and not self._sending:
            self._sending = True
            self._send()

    def _send(self) -> None:
        """Send what the `_ready` writers `take`, tell each what `landed`, then `_sent()`."""
        raise NotImplementedError

    def _sent(self) -> None:
        """The round trip out came back: the next goes at once if writers wait for it."""
        self._sending = bool(self._ready)
        if self._sending:
            self._send()


class AppendTicks(TickGrid):
    """The grid, and the path of every append of a process's runs to Redis."""

    def __init__(self, redis: AnyRedis, settings: Settings, period: float = 0.005) -> None:
        super().__init__(settings.flush_interval_ms / 1000, period)
        topology = Topology.of(settings)
        self._round_trips = round_trips(redis)
        self._archive = topology.archive
        self._maxlen = settings.stream_maxlen
        self._lean = _Source(AppendAt.lua_source(topology))
        self._checked = _Source(AppendEvents.lua_source(topology))
        cluster = isinstance(redis, RedisCluster)
        self._counter = JoinCounter(Keys(settings.key_prefix), secrets.token_hex(8), cluster)
        if cluster:
            hash_tags()  # (found now, not at the first tick)
        self._refused: _Group = []  # refused by append_at.lua: checked in the next round trip
        # A process that heard nothing from Redis this long (stopped, cut off) may have lost runs it knows
        # nothing of yet: a session deleted and made again under its id since (gateway/commands/writes.py
        # keeps ids two leases at least). Its next appends are checked whole, the leases with them.
        self._patience = settings.lease_ms / 3000
        self._heard = -math.inf

    # -- a round trip --------------------------------------------------------------------------

    def _sent(self) -> None:
        self._sending = bool(self._ready or self._refused)
        if self._sending:
            self._send()

    def _send(self) -> None:
        ready, self._ready = self._ready, []
        refused, self._refused = self._refused, []
        counter = self._counter
        if self.loop.time() - self._heard > self._patience:
            counter.unknown()
        one = counter.one
        places: dict[Count, tuple[_Group, _Group]] = {}  # per count (a slot's, on a cluster): lean, checked
        for writer, events in refused:
            count = one or counter.count(writer.lease.slot)
            if (place := places.get(count)) is None:
                place = places[count] = ([], [])
            place[1].append((writer, events))
        for writer in ready:
            try:
                taken = writer.take()
            except Exception as exc:  # (its text could not be made an event: that run fails, alone)
                _tell(writer, exc)
                continue
            if taken is None:
                continue
            lease = writer.lease
            count = one or counter.count(lease.slot)
            if (place := places.get(count)) is None:
                place = places[count] = ([], [])
            place[0 if counter.vouches_for(lease.session_id, count) else 1].append((writer, taken))
        if not places:
            self._sending = False
            return
        calls: list[_Call] = []
        commands: list[tuple[Any, ...]] = []
        slots: list[int] = []
        lean_script, checked_script = self._lean.call(), self._checked.call()
        lean_calls = 0
        for count, (lean, checked) in places.items():
            expected, made = count.expected, 0  # (each call of a count counts one after the one before it)
            for group in _cut(lean):
                assert expected is not None  # (lean only while the count is known)
                calls.append(_Call(count, True, group, expected + made))
                commands.append(self._lean_call(lean_script, group, count.key, expected + made))
                made += 1
            lean_calls += made
            for group in _cut(checked):
                at = None if expected is None else expected + made
                calls.append(_Call(count, False, group, at))
                commands.append(self._checked_call(checked_script, group, count.key, at))
                made += 1
            slots += [count.slot] * made
        self._lean.sent(lean_script, lean_calls > 0)
        self._checked.sent(checked_script, len(calls) > lean_calls)
        sent = self._round_trips.submit(commands, slots)
        sent.add_done_callback(functools.partial(self._settle, calls, self.loop.time()))

    def _lean_call(self, script: tuple[str, str], group: _Group, count_key: str, expected: int) -> tuple[Any, ...]:
        keys: list[Any] = [count_key]
        args: list[Any] = [self._maxlen, expected]
        for writer, events in group:
            append_keys = writer.lease.append_keys
            keys.append(append_keys.events)
            if self._archive:
                keys.append(append_keys.meta)
            args += (writer.lease.journal.written + 1, 2 * len(events))
            for event in events:
                args += event
        return (*script, len(keys), *keys, *args)

    def _checked_call(
        self, script: tuple[str, str], group: _Group, count_key: str, expected: int | None
    ) -> tuple[Any, ...]:
        keys: list[Any] = [count_key]
        args: list[Any] = [self._maxlen, "" if expected is None else expected]
        for writer, events in group:
            lease = writer.lease
            keys += (lease.append_keys.meta, lease.append_keys.events, lease.append_keys.lease)
            args += (lease.run_id, lease.token, lease.journal.written, 2 * len(events))
            for event in events:
                args += event
        return (*script, len(keys), *keys, *args)

    def _settle(self, calls: list[_Call], sent_at: float, sent: "asyncio.Future[list[Any]]") -> None:
        """Every reply of a round trip, in one pass: each writer told its seq, or its error; appends
        refused the lean way go in the next round trip's checked call. On a cluster a primary out of
        reach fails its own calls alone (each as its error)."""
        replies: list[Any] | BaseException = outcome(sent)
        if isinstance(replies, BaseException):  # the round trip failed: each append did
            replies = [replies] * len(calls)
        heard = False
        of, left = None, None  # a count, and what its call before left: Redis ran nothing of its own in between
        for call, reply in zip(calls, replies, strict=True):
            if call.count is not of:
                of, left = call.count, None
            if isinstance(reply, list):
                heard = True
                left = self._settle_call(call, reply, left)
                continue
            left = None
            heard = heard or isinstance(reply, ResponseError)  # (Redis answered)
            self._counter.unknown(call.count)  # it may have gone through unheard of
            if isinstance(reply, NoScriptError):  # not run (Redis restarted?): sent again, the script whole
                (self._lean if call.lean else self._checked).forgotten = True
                self._refused += call.group
                continue
            for writer, _ in call.group:
                _tell(writer, reply)
        if heard:
            self._heard = sent_at  # (a reply read late, after a stop, says nothing of Redis since)
        tally.flush()
        self._sent()

    def _settle_call(self, call: _Call, reply: list[Any], before: int | None) -> int:
        """Tell each writer of the call what became of its append; the count the call left."""
        checked: list[str] = []
        for (writer, events), one in zip(call.group, reply[1:], strict=True):
            if call.lean and not one:
                self._refused.append((writer, events))
                continue
            if isinstance(one, ResponseError):
                one = _fenced(one)
            elif not call.lean:
                checked.append(writer.lease.session_id)
            _tell(writer, one)
        count = int(reply[0])
        self._counter.counted(call.count, before if call.expected is None else call.expected, count, checked)
        return count


def _tell(writer: TickWriter, reply: Any) -> None:
    """`writer.landed(reply)`: a bug in one run's writer does not keep the others of the round trip untold."""
    try:
        writer.landed(reply if isinstance(reply, BaseException) else int(reply))
    except Exception:
        logger.exception("run %s: its append's reply could not be handled", writer.lease.run_id)


class Tally:
    """Counts added to the metrics once per round trip, not per append (a counter's `inc` takes a lock
    each time): the ticks flush it as they settle, and a write off their path right after it counted."""

    def __init__(self) -> None:
        self._counts: dict[Any, int] = {}

    def add(self, counter: Any, amount: int) -> None:
        self._counts[counter] = self._counts.get(counter, 0) + amount

    def flush(self) -> None:
        if self._counts:
            counts, self._counts = self._counts, {}
            for counter, amount in counts.items():
                counter.inc(amount)


tally = Tally()


class _Source:
    """A script, sent by its digest; whole (EVAL, which Redis keeps) in every call of the first round
    trip, and of the next after Redis answered that it forgot it (a restart, SCRIPT FLUSH; on a
    cluster, a primary that had not run it yet)."""

    __slots__ = ("source", "sha", "forgotten")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.forgotten = True

    def call(self) -> tuple[str, str]:
        """How this round trip's calls of it begin."""
        return ("EVAL", self.source) if self.forgotten else ("EVALSHA", self.sha)

    def sent(self, call: tuple[str, str], made: bool) -> None:
        """A round trip's calls of it began so (if `made`: it had any)."""
        if made and call[0] == "EVAL":
            self.forgotten = False


def _cut(group: _Group) -> list[_Group]:
    if len(group) <= JOINED_CALLS:  # (most: on a cluster, a slot's are one or two)
        return [group] if group else []
    return [group[i : i + JOINED_CALLS] for i in range(0, len(group), JOINED_CALLS)]


def _fenced(error: ResponseError) -> BaseException:
    """A checked append's error reply, as the writer is told it (FENCED: LeaseLost, LOST: WritesLost)."""
    try:
        raise_fenced(error)
    except Exception as exc:
        return exc
    return error
