"""A script's calls from every run of a process, sent to Redis together (a worker's appends and
lease renewals: the script runner sends those contracts this way, shared/scripts/runner.py).

One append at a time goes out per run (the writer waits for each), but a worker runs many runs: the
calls they make while a round trip is on its way wait for it to come back, then go together, with
whatever else the process sends then (shared/round_trips.py: one write, one read, one pool
checkout). Under load a round trip carries many calls; alone, a call goes at once. Each call keeps
its own reply: a fenced run (its lease lost) fails alone, the others go on, and a retried append
keeps its id, as before. Appends and lease renewals (which the lease keepers make at the same
instants, so that they share round trips) go this way.
"""

import asyncio
import secrets
from collections import OrderedDict
from typing import Any

from redis.asyncio import Redis

from tokentail.shared.joiner import Joiner, split_replies
from tokentail.shared.keys import Keys
from tokentail.shared.round_trips import round_trips
from tokentail.shared.scripts.contract import Topology
from tokentail.shared.scripts.runs import AppendEvents

# The most calls joined into one script call: Redis runs a script without serving anyone else, and
# sends what it published (the gateways' notifications) only once it returns.
JOINED_CALLS = 64


class JoinCounter:
    """The count of the joined calls a process sent, kept in a key of its own that each call
    increments (append_events.lua), and the count the process expects Redis to be at. A call that
    finds it so knows Redis holds every call of the process before it, and none the process did not
    hear back from: none of its appends is a try sent again, and Redis lost none of what they wrote
    (it loses a suffix of what it was sent: a replica's lag, the AOF's last second).

    That covers the events of the runs whose appends were checked whole since the count was last
    found off (`trusted`: the runs of a call that checked everything, or that the count vouched
    for); a run that was idle when it was found off may have lost events then. So a call is sent
    with the count only when all its runs are trusted; else with none, and it checks each append
    whole (then its runs are trusted). Unknown at first, after a round trip that failed, and for a
    run forgotten (the most kept is bounded): it checks everything, and knows again."""

    TRUSTED = 100_000

    def __init__(self, key: str) -> None:
        self.key = key
        self.expected: int | None = None
        self._trusted: OrderedDict[Any, None] = OrderedDict()  # a run's session's first key

    def vouches_for(self, sessions: list[Any]) -> bool:
        return self.expected is not None and all(session in self._trusted for session in sessions)

    def counted(self, sessions: list[Any], sent: int | None, count: int) -> None:
        """A call of `sessions`' appends that expected `sent` came back with `count`."""
        if sent is None or count != sent + 1:
            self._trusted.clear()  # Redis may have lost what any run wrote: each is checked again
        for session in sessions:
            self._trusted[session] = None
            self._trusted.move_to_end(session)
        while len(self._trusted) > self.TRUSTED:
            self._trusted.popitem(last=False)
        self.expected = count


def append_pipeline(redis: Redis, topology: Topology, keys: Keys) -> "ScriptPipeline":
    """The per-token path's pipeline of a process: append_events.lua's calls joined, counted."""
    counter = JoinCounter(keys.joined_count(secrets.token_hex(8)))
    source = AppendEvents.lua_source(topology)
    return ScriptPipeline(redis, source, joinable=True, shared_args=AppendEvents.shared_args(), counter=counter)


class ScriptPipeline:
    """Called as the script is (`await call(keys=..., args=...)`), by the script runner (shared/scripts/runner.py).

    `joinable`: the script takes any number of calls in one (append_events.lua): its first
    `shared_args` arguments are shared, then each call's keys and arguments follow the previous
    call's, and it replies with a list: the joined calls' count, then one reply per call. Calls that
    wait together then go as one script call (up to `JOINED_CALLS`): Redis pays for one script call,
    not one per run. Each caller still gets its own reply, as a list of one. With a `counter`, the
    joined call's first key is its key, and its last shared argument the count it expects."""

    def __init__(
        self,
        redis: Redis,
        script: str,
        joinable: bool = False,
        shared_args: int = 1,
        counter: JoinCounter | None = None,
    ) -> None:
        self._script = redis.register_script(script)
        self._joinable = joinable
        self._shared_args = shared_args
        self._counter = counter
        # An item is a list of calls (a tick's appends): one future for them all, not one per call.
        self._joiner: Joiner[list[tuple[list[Any], list[Any]]], list[Any]] = Joiner(self._batches)
        self._round_trips = round_trips(redis)  # with everything else the process sends on `redis`

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        reply = (await self._joiner.submit([(keys, args)]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def submit_many(self, calls: list[tuple[list[Any], list[Any]]]) -> "asyncio.Future[list[Any]]":
        """The replies of `calls`, in order, as one future (an error reply as its exception), for a
        caller that sends many at once and does not wait in a task of its own (the worker's tick)."""
        return self._joiner.submit(calls)

    async def _batches(self, batches: list[list[tuple[list[Any], list[Any]]]]) -> list[list[Any]]:
        return await split_replies(batches, self._replies)

    async def _replies(self, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        if not self._joinable:
            return await self._execute(calls)
        groups = [calls[i : i + JOINED_CALLS] for i in range(0, len(calls), JOINED_CALLS)]
        shared, counter = self._shared_args, self._counter
        joined, sent = [], []
        for number, group in enumerate(groups):
            keys = [key for keys, _ in group for key in keys]
            args = [*group[0][1][:shared], *(arg for _, args in group for arg in args[shared:])]
            if counter is not None:  # the groups go in order: each expects one more than the last
                expected = None if counter.expected is None else counter.expected + number
                keys.insert(0, counter.key)
                args[shared - 1] = expected if counter.vouches_for([k[0] for k, _ in group]) else ""
                sent.append(expected)
            joined.append((keys, args))
        answered = await self._answered(joined)
        replies: list[Any] = []
        for number, (group, reply) in enumerate(zip(groups, answered, strict=True)):
            if isinstance(reply, Exception):
                replies += [reply] * len(group)
                continue
            if counter is not None:  # (a run refused, LOST above all, is not trusted: it is checked again)
                written = [
                    keys[0] for (keys, _), one in zip(group, reply[1:], strict=True) if not isinstance(one, Exception)
                ]
                counter.counted(written, sent[number], int(reply[0]))
            replies += [[one] for one in reply[1:]]
        if counter is not None and any(isinstance(reply, Exception) for reply in answered):
            counter.expected = None  # a call may have gone through unheard of
        return replies

    async def _answered(self, joined: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        try:
            return await self._execute(joined)
        except BaseException:
            if self._counter is not None:
                self._counter.expected = None  # it may have gone through unheard of
            raise

    async def _execute(self, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        return await self._round_trips.script_calls(self._script, calls)
