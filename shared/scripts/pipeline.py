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
from typing import Any

from redis.asyncio import Redis

from tokentail.shared.joiner import Joiner
from tokentail.shared.round_trips import round_trips

# The most calls joined into one script call: Redis runs a script without serving anyone else, and
# sends what it published (the gateways' notifications) only once it returns.
JOINED_CALLS = 64


class ScriptPipeline:
    """Called as the script is (`await call(keys=..., args=...)`), by the script runner (shared/scripts/runner.py).

    `joinable`: the script takes any number of calls in one (append_events.lua): its first argument
    is shared, then each call's keys and arguments follow the previous call's, and it replies with a
    list, one reply per call. Calls that wait together then go as one script call (up to
    `JOINED_CALLS`): Redis pays for one script call, not one per run. Each caller still gets its own
    reply, as a list of one."""

    def __init__(self, redis: Redis, script: str, joinable: bool = False) -> None:
        self._script = redis.register_script(script)
        self._joinable = joinable
        self._joiner: Joiner[tuple[list[Any], list[Any]], Any] = Joiner(self._replies)
        self._round_trips = round_trips(redis)  # with everything else the process sends on `redis`

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        return await self.submit(keys, args)

    def submit(self, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        """The call, as a future of its reply (for callers that do not wait in a task of their own)."""
        return self._joiner.submit((keys, args))

    async def _replies(self, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        if not self._joinable:
            return await self._execute(calls)
        groups = [calls[i : i + JOINED_CALLS] for i in range(0, len(calls), JOINED_CALLS)]
        joined = [
            (
                [key for keys, _ in group for key in keys],
                [group[0][1][0], *(arg for _, args in group for arg in args[1:])],
            )
            for group in groups
        ]
        replies: list[Any] = []
        for group, reply in zip(groups, await self._execute(joined), strict=True):
            replies += [reply] * len(group) if isinstance(reply, Exception) else [[one] for one in reply]
        return replies

    async def _execute(self, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        return await self._round_trips.script_calls(self._script, calls)
