"""A session's tree of runs (docs/subagents.md): in which lane a run is (shared/store/keys.py), and the
cancel of a run's descendants, which the gateway's cancel and a parent's end both go through."""

from collections.abc import Awaitable
from typing import cast

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import decode_run, read_run
from tokentail.shared.store.scripts.runner import Run
from tokentail.shared.store.scripts.runs import CancelRun, RunScope
from tokentail.shared.vocabulary.records import RunRecord

# How many times the cancel of a tree reads it again for children started meanwhile: one more level each
# time at most (a run with a cancel pending starts none: spawn.lua), so past the deepest tree a setting allows.
MOST_TREE_READS = 16


async def lane_of_run(redis: AnyRedis, keys: Keys, session_id: str, run_id: str | None) -> str:
    """The lane run `run_id` of the session is in: its own for a child, else the session's."""
    if not run_id:
        return session_id
    run = await read_run(redis, keys.session(session_id), run_id)
    return run.lane if run is not None and run.lane else session_id


def descendants(runs: dict[str, RunRecord], run_id: str) -> list[RunRecord]:
    """The runs below `run_id` in the tree, parents before their children."""
    found: list[RunRecord] = []
    below = [runs[child] for child in runs[run_id].children if child in runs] if run_id in runs else []
    while below:
        run = below.pop(0)
        found.append(run)
        below += [runs[child] for child in run.children if child in runs]
    return found


async def cancel_descendants(
    run: Run, scope: RunScope, redis: AnyRedis, session_id: str, run_id: str, reason: str
) -> int:
    """Cancel every descendant of `run_id` still going (each as the API cancels a run: cancel_run.lua,
    in its lane), including children started while it cancels; how many it asked to end."""
    asked: set[str] = set()
    runs_key = scope.keys.session(session_id).runs
    for _ in range(MOST_TREE_READS):
        raw = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(runs_key))
        runs = {key.decode(): decode_run(value) for key, value in raw.items()}
        going = [child for child in descendants(runs, run_id) if child.active and child.run_id not in asked]
        if not going:
            break
        for child in going:
            lane = child.lane or session_id
            channel = scope.keys.cancel_channel
            await run(CancelRun(scope.run_keys(lane), scope.args(lane), channel, reason, child.run_id, "", "0"))
            asked.add(child.run_id)
    return len(asked)
