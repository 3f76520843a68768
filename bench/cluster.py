"""tokentail's sessions on a Redis Cluster against one Redis: CPU per 1,000 tokens and per start, in
one run (`bench.py --redis cluster`).

The cluster is docs/deployment.md's "Redis Cluster" on this box: three primaries (cluster-enabled
redis-servers joined by `redis-cli --cluster create`: `LocalCluster`, tokentail/redis_server.py)
hold the sessions (`TOKENTAIL_REDIS_CLUSTER=true`, `TOKENTAIL_REDIS_URL` a node), and the job queue
with the leases index is on a Redis of its own (`TOKENTAIL_QUEUE_REDIS_URL`). Against it, one Redis
holding everything. Every redis-server runs AOF `everysec`, as a deployment that promises to survive
a restart does; both sides run this tree's gateway and worker, on fresh processes each turn, and take
turns, each first in every other round (harness.in_turns), as the before-and-after phases do:

- per token (as bench.py's `per_token_against`): a level of 400 streams (`--quick`: 50) of 300
  tokens (150) at 50 tokens/s, 4 rounds (1); each process's CPU over the level's steady part
  (bench/levels.py) per 1,000 tokens delivered, and Redis's per token event appended; a level during
  which other work took more than `--max-other` of a core is run again (as many as the rounds, in all);
- per start (as `start_cpu_against`): starts at 100 a second (`--quick`: 50) for 10 s (1.5 s), 4
  rounds (1); each process's CPU over the step less its idle share, per start (bench/starts.py).

What counts as Redis is every redis-server a side runs: on the cluster, the three primaries and the
queue's (`ClusterTokentail.role_pids`; the queue's also shown alone, for bench/capacity.py); so Redis
per event is the cluster's whole cost of an event, wherever it lands. Figures are the medians of the
rounds; the whole system is gateway, worker and Redis together; a ratio is cluster / one Redis (above
1, the cluster costs more).

With `--baseline REV` (bench.py), per token only, each way for this tree and for revision REV (its
tree laid out by bench/baseline.py; its scripted model must stamp its tokens' due times, as every
revision since e0b313f does): four sides in turns, each round's order the last's reversed, so that
the cluster's ratio to one Redis is measured for both revisions in one run, on the same servers.

Left out of a step's window: what a start leaves for later. With the queue apart, a start left two
entries in the leases index (the gateway's intent, the worker's watch), which a reaper looked at a
lease and two leases later (`requeue_run.lua` on the session's primary, `settle_check.lua` on the
queue's Redis), mostly after the step; since the claim drops the intent and a run's end its watch,
a run that ends within a lease leaves none; on one Redis the scripts keep that index exact and nothing
is left. So in the first `TAIL_ROUNDS` rounds each side's step is followed by `TAIL_SECONDS` (two
leases and a reaper's sweep), whose CPU less idle, per start of the step, is what it left: reported
apart, and added to the step's own in "counting what it leaves". bench/commandstats.py `--starts`
counts what is run within the step.
"""

import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import baseline as baseline_tree
import compare
import harness
import levels
import starts
import systems
from harness import ROOT
from systems import TOKENS, Tokentail

from tokentail.redis_server import LocalCluster, RedisServer

ROLES = ("gateway", "worker", "Redis")  # as printed: a side's processes (`by_role`)
SIDES = ("one", "cluster")
AOF = "everysec"
TAIL_ROUNDS = 2  # the rounds of starts whose step is followed by the measure of what it left (each side first once)
TAIL_SECONDS = 11.0  # two leases (5 s by default) and a reaper's sweep: when the last start's last look is done


class ClusterTokentail(Tokentail):
    """tokentail with its sessions on `cluster` and its queue on `queue`, a Redis of its own."""

    name = "tokentail (cluster)"

    def __init__(self, cluster: LocalCluster, queue: RedisServer) -> None:
        super().__init__(cluster.nodes[0])  # `redis`: the node the processes are given (connections counted there)
        self.cluster, self.queue = cluster, queue
        self.extra_env = {
            "TOKENTAIL_REDIS_CLUSTER": "true",
            "TOKENTAIL_REDIS_URL": cluster.url,
            "TOKENTAIL_QUEUE_REDIS_URL": queue.url,
        }

    @property
    def role_pids(self) -> dict[str, list[int]]:
        primaries = [node.process.pid for node in self.cluster.nodes if node.process]
        queue = [self.queue.process.pid] if self.queue.process else []
        return super().role_pids | {"redis": primaries, "queue": queue}


def by_role(cpu: dict[str, float]) -> dict[str, float]:
    """A side's CPU as printed: Redis is every redis-server it runs, the queue's among them (on the
    cluster, also shown alone: where one queue Redis tops out, bench/capacity.py)."""
    figures = {"gateway": cpu["gateway"], "worker": cpu["producer"], "Redis": cpu["redis"] + cpu.get("queue", 0.0)}
    figures["system"] = sum(figures.values())
    if "queue" in cpu:
        figures["queue Redis"] = cpu["queue"]
    return figures


@contextmanager
def on_a_cluster(folder: Path) -> Iterator[tuple[LocalCluster, RedisServer]]:
    """A cluster of three primaries for the sessions, and a Redis for its queue: all AOF `everysec`."""
    (folder / "queue").mkdir(parents=True)
    with (
        LocalCluster(folder / "cluster", extra_args=("--appendonly", "yes", "--appendfsync", AOF)) as cluster,
        compare.redis_server(folder / "queue", AOF) as queue,
    ):
        yield cluster, queue


@contextmanager
def redis_sides(folder: Path) -> Iterator[tuple[RedisServer, LocalCluster, RedisServer]]:
    """One Redis; and a cluster with its queue's Redis (`on_a_cluster`): all AOF `everysec`."""
    (folder / "one").mkdir(parents=True)
    with compare.redis_server(folder / "one", AOF) as one, on_a_cluster(folder) as (cluster, queue):
        yield one, cluster, queue


class _Again:
    """How many disturbed levels a phase may still run again: as many as it has rounds, in all."""

    def __init__(self, rounds: int) -> None:
        self.left = rounds


async def _level(
    system: Tokentail, streams: int, tokens: int, max_other: float, again: _Again, label: str
) -> dict[str, float]:
    """One level on fresh processes: each process's CPU per 1,000 tokens and Redis's per token event,
    printed. Run again while other work took more than `max_other` of a core meanwhile, as long as the
    phase may (`again`: so that a busy box lengthens a run by a level a round at most)."""
    while True:
        await system.restart()
        run = await levels.run_level(system, streams, tokens)
        system.stop()
        redis = by_role(run.cpu)["Redis"]
        figures = {role: 1000 * cpu / max(1, run.tokens) for role, cpu in by_role(run.cpu).items()}
        figures["Redis µs/event"] = 1e6 * redis / max(1, run.events)
        other = run.cpu["other"] / run.seconds
        print(
            f"  {label} {_cells(figures, '.4f')}  (s per 1,000 tokens; {run.events} events, {run.tokens} tokens"
            f" in {run.seconds:.1f} s; p99 {run.p99:.1f} ms; failed {run.incomplete}; other CPU {other:.0%})"
        )
        if other <= max_other or not again.left:
            return figures
        again.left -= 1
        print(f"  {label} other work took {other:.0%} of a core meanwhile; run again")


async def per_token(one: Tokentail, cluster: ClusterTokentail, quick: bool, max_other: float) -> dict[str, Any]:
    """Each process's CPU per 1,000 tokens and Redis's per token event, one level a turn."""
    streams, tokens, rounds = (50, 150, 1) if quick else (400, TOKENS, 4)
    print(f"  -- per token: {rounds} level(s) of {streams} streams of {tokens} tokens each way, in turns")
    measured: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    again = _Again(rounds)
    for side, system in harness.in_turns(rounds, ("one", one), ("cluster", cluster)):
        measured[side].append(await _level(system, streams, tokens, max_other, again, f"{side:8}"))
    return {"streams": streams, "tokens": tokens, "rounds": rounds, **_medians(measured), "measured": measured}


async def per_start(one: Tokentail, cluster: ClusterTokentail, quick: bool) -> dict[str, Any]:
    """Each process's CPU per start, one step of starts a turn."""
    rate, seconds, rounds = (50, 1.5, 1) if quick else (100, 10.0, 4)
    print(f"  -- per start: {rounds} step(s) of {rate} starts/s for {seconds:g} s each way, in turns")
    measured: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    counting: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}  # with what the step left
    for side, system in harness.in_turns(rounds, ("one", one), ("cluster", cluster)):
        await system.restart()
        idle = await starts.idle_cpu(system, min(seconds / 2, 5.0))
        step = await starts.start_step(system, rate, seconds, idle)
        tail = await starts.idle_cpu(system, TAIL_SECONDS) if len(measured[side]) < TAIL_ROUNDS else None
        system.stop()
        figures = by_role(step["cpu_ms_per_start"])
        measured[side].append(figures)
        print(
            f"  {side:8} {_cells(figures, '.2f')}  (ms per start; {step['starts']} starts,"
            f" first token p99 {step['first_token_p99_ms']:.1f} ms; failed {step['failed']};"
            f" other CPU {step['cpu_share']['other']:.0%})"
        )
        if tail is not None:
            left = by_role(
                {role: 1000 * max(0.0, tail[role] - idle[role]) * TAIL_SECONDS / step["starts"] for role in tail}
            )
            counting[side].append({role: figures[role] + left[role] for role in figures})
            print(f"  {side:8} {_cells(left, '.2f')}  (ms per start, left for the {TAIL_SECONDS:g} s after the step)")
    return {
        "rate": rate,
        "seconds": seconds,
        "rounds": rounds,
        **_medians(measured),
        "measured": measured,
        "counting_what_it_leaves": {**_medians(counting), "measured": counting},
    }


async def per_token_of_revisions(
    sides: dict[str, tuple[Tokentail, ClusterTokentail]], quick: bool, max_other: float
) -> dict[str, dict[str, Any]]:
    """`per_token` for each revision (this tree, a baseline's), the four sides in turns, each round in
    the order of the last reversed; a revision's figures as `per_token`'s."""
    streams, tokens, rounds = (50, 150, 1) if quick else (400, TOKENS, 4)
    names = list(sides)
    print(f"  -- per token: {rounds} level(s) of {streams} streams of {tokens} tokens, each of {', '.join(names)}")
    measured: dict[str, dict[str, list[dict[str, float]]]] = {name: {side: [] for side in SIDES} for name in names}
    turns = [(name, side, system) for name in names for side, system in zip(SIDES, sides[name], strict=True)]
    again = _Again(rounds)
    for number in range(rounds):
        for name, side, system in turns if number % 2 == 0 else reversed(turns):
            label = f"{name:10} {side:8}"
            measured[name][side].append(await _level(system, streams, tokens, max_other, again, label))
    return {
        name: {"streams": streams, "tokens": tokens, "rounds": rounds, **_medians(rounds_of), "measured": rounds_of}
        for name, rounds_of in measured.items()
    }


async def against_one_redis(
    data_dir: str, quick: bool, baseline: str | None = None, max_other: float = 0.25
) -> dict[str, Any]:
    """Per token, then per start, on the cluster and on one Redis, in turns; the figures, printed.
    With `baseline` (a revision), per token only, for this tree and for it. A level during which other
    work took more than `max_other` of a core is run again (as many as the rounds, in all)."""
    print(f"== CPU on a Redis Cluster (3 primaries, the queue on a Redis of its own) against one Redis, AOF {AOF}")
    began = time.monotonic()
    folder = Path(data_dir) / "redis-cluster"
    # Timed from each token's due time: both sides run this tree's scripted model, which stamps them
    # (the append clock reads the stream with a one-server client, which a cluster answers MOVED).
    clock, systems.CLOCK = systems.CLOCK, "due"
    try:
        with redis_sides(folder) as (redis, cluster, queue):
            one, on_cluster = Tokentail(redis), ClusterTokentail(cluster, queue)
            others = (Tokentail(redis), ClusterTokentail(cluster, queue)) if baseline else ()
            tree = tree_of(baseline, folder / "baseline") if baseline else None
            for system in others:
                system.tree, system.due_stamps = tree, True
            try:
                if others:
                    by_revision = {"this tree": (one, on_cluster), baseline or "": others}
                    figures = {"per_token_of": await per_token_of_revisions(by_revision, quick, max_other)}
                else:
                    figures = {
                        "per_token": await per_token(one, on_cluster, quick, max_other),
                        "per_start": await per_start(one, on_cluster, quick),
                    }
            finally:
                for system in (one, on_cluster, *others):
                    system.stop()
    finally:
        systems.CLOCK = clock
    figures["seconds"] = round(time.monotonic() - began)
    return figures


def tree_of(revision: str, into: Path) -> Path:
    """The package of `revision` (bench/baseline.py), which must stamp its tokens' due times."""
    commit = baseline_tree.commit_of(revision)
    assert commit is not None, revision  # checked with the arguments
    stamps = subprocess.run(["git", "merge-base", "--is-ancestor", "e0b313f", commit], cwd=ROOT, check=False)
    if stamps.returncode != 0:
        raise SystemExit(f"--baseline {revision}: its scripted model does not stamp due times (before e0b313f)")
    return baseline_tree.gateway_tree(commit, into)


def rows(figures: dict[str, Any]) -> list[tuple[str, ...]]:
    """The summary: each side's medians and cluster / one Redis, per 1,000 tokens, then per start (or,
    with a baseline, per 1,000 tokens of each revision)."""
    columns = [*ROLES, "system", "Redis µs/event", "queue Redis"]
    table: list[tuple[str, ...]] = [("CPU", *columns)]
    if "per_token_of" in figures:
        groups = [
            (f"s per 1,000 tokens, {revision} ({token['streams']} streams)", token, ".4f")
            for revision, token in figures["per_token_of"].items()
        ]
    else:
        token, start = figures["per_token"], figures["per_start"]
        groups = [
            (f"s per 1,000 tokens ({token['streams']} streams)", token, ".4f"),
            (f"ms per start ({start['rate']}/s)", start, ".3f"),
        ]
        if "counting_what_it_leaves" in start:
            leaves = f"ms per start, counting what it leaves ({TAIL_ROUNDS} rounds)"
            groups.append((leaves, start["counting_what_it_leaves"], ".3f"))
    for name, measured, unit in groups:
        for side, label in (("one", "one Redis"), ("cluster", "cluster"), ("ratio", "cluster / one")):
            cells = {k: measured[side].get(k) for k in columns}
            shown = (
                "" if v is None else f"{v:.2f}x" if side == "ratio" else _format(k, v, unit) for k, v in cells.items()
            )
            table.append((f"{name}, {label}", *shown))
    return table


def _medians(measured: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    medians = {
        side: {k: statistics.median(f[k] for f in rounds) for k in rounds[0]} for side, rounds in measured.items()
    }
    medians["ratio"] = {k: medians["cluster"][k] / medians["one"][k] for k in medians["one"] if k in medians["cluster"]}
    return medians


def _format(name: str, value: float, unit: str) -> str:
    return format(value, ".1f" if name == "Redis µs/event" else unit)


def _cells(figures: dict[str, float], unit: str) -> str:
    return "  ".join(f"{k} {_format(k, v, unit)}" for k, v in figures.items())
