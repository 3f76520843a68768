"""A session's tree of runs (docs/subagents.md) in Redis: in which lane a run is (shared/store/keys.py),
the cancel of a run's descendants (which the gateway's cancel, a parent's end and a delete all go
through; which runs are below a run, level by level: shared/vocabulary/run_tree.py), and the lanes a
deleted session leaves."""

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.store.reads import decode_run, read_run
from tokentail.shared.store.scripts.runner import Run
from tokentail.shared.store.scripts.runs import CancelRun, RunScope
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.shared.vocabulary.run_tree import descendants

# How many times the cancel of a tree reads it again for children started meanwhile: one more level each
# time at most (a run with a cancel pending starts none: spawn.lua), so past the deepest tree a setting allows.
MOST_TREE_READS = 16


@dataclass(frozen=True, slots=True)
class RunTree:
    """The trees of runs of a deployment's sessions: `run` runs its scripts, `redis` holds the sessions,
    `queue` the leases index."""

    run: Run
    scope: RunScope
    redis: AnyRedis
    queue: AnyRedis

    async def lane(self, session_id: str, run_id: str | None) -> str:
        """The lane run `run_id` of the session is in: its own for a child, else the session's."""
        if not run_id:
            return session_id
        run = await read_run(self.redis, self.scope.keys.session(session_id), run_id)
        return run.lane if run is not None and run.lane else session_id

    async def runs(self, session_id: str) -> dict[str, RunRecord]:
        raw = await cast(Awaitable[dict[bytes, bytes]], self.redis.hgetall(self.scope.keys.session(session_id).runs))
        return {key.decode(): decode_run(value) for key, value in raw.items()}

    async def cancel_below(self, session_id: str, run_id: str, reason: str) -> int:
        """Cancel every descendant of `run_id` still going (each as the API cancels a run: cancel_run.lua,
        in its lane), children started while it cancels included; how many it asked to end."""
        asked: set[str] = set()
        for _ in range(MOST_TREE_READS):
            going = [run for run in descendants((await self.runs(session_id)).values(), run_id) if run.active]
            going = [run for run in going if run.run_id not in asked]
            if not going:
                break
            for child in going:
                lane, channel = child.lane or session_id, self.scope.keys.cancel_channel
                await self.run(
                    CancelRun(
                        self.scope.run_keys(lane), self.scope.args(lane), channel, reason, child.run_id, "", "0", "0"
                    )
                )
                asked.add(child.run_id)
        return len(asked)

    async def lanes_to_delete(self, session_id: str, active_run: str | None) -> list[str]:
        """Before the session's delete: its active run's children cancelled (none starts after), the
        lanes of its child runs, whose keys `drop_lanes` deletes after it."""
        if active_run:
            await self.cancel_below(session_id, active_run, "session deleted")
        return [run.lane for run in (await self.runs(session_id)).values() if run.lane]

    async def drop_lanes(self, lanes: list[str]) -> None:
        """Delete the keys of a deleted session's lanes (its stream, records and tombstone went with it)."""
        keys = self.scope.keys
        for lane in lanes:
            k = keys.session(lane)
            await self.redis.delete(k.meta, k.lease, k.pending, k.steps, k.steers)
        if lanes:
            await self.queue.zrem(keys.lease_checks, *lanes)
