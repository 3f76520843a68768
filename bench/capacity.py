"""How many cores a deployment needs per 1,000 streams and per 100 starts a second, on one Redis and
on a Redis Cluster, and where one queue Redis tops out: docs/capacity.md, from measured costs.

    .venv/bin/python bench/capacity.py                          # measures (bench/cluster.py, about 5 min), then sizes
    .venv/bin/python bench/capacity.py --from cluster.json      # from `bench.py --redis cluster --json cluster.json`
    .venv/bin/python bench/capacity.py --streams 20000 --starts 300   # ... and a fleet for that load

The costs are bench/cluster.py's, one run of this tree on both topologies in turns: each process's
CPU per 1,000 tokens (400 streams at 50 tokens/s, the steady part of a level) and per start (100
starts/s for 10 s, less idle, counting what a start leaves for a reaper after the step where it was
measured). A stream here is 50 tokens a second: 1,000 of them are 50,000 tokens a second, so a
role's cores per 1,000 streams are 50 times its seconds per 1,000 tokens; 100 starts a second cost a
tenth of its milliseconds per start, in cores.

Every process of tokentail, and every redis-server, runs on one core (Python's event loop, Redis's
main thread): a process is sized to `HEADROOM` of a core, so that a burst finds room and the event
loop's lag stays low (docs/benchmarks.md: the loop lag per level). Gateways and workers are
stateless and scale out; on one Redis, that Redis carries every stream and every start; on a
cluster, the sessions spread over the primaries by slot, and the job queue with the leases index is
one Redis of its own, whatever the cluster's size: its CPU per start sets the starts a second a
deployment can take (`ceiling`). Past it, a deployment runs cells: whole tokentail deployments
(gateways, workers, a cluster, a queue Redis), each given its tenants by the proxy in front (by API
key or host), since a session and its runs never cross tenants.
"""

import argparse
import asyncio
import json
import math
import sys
import tempfile
from typing import Any

import cluster
import harness
import uvloop

HEADROOM = 0.7  # the share of a core a process is sized to
TOKENS_PER_SECOND = 50  # one stream's rate: the benchmark's
ROLES = ("gateway", "worker", "Redis", "queue Redis")


def per_thousand_streams(token: dict[str, float]) -> dict[str, float]:
    """Cores per 1,000 streams of TOKENS_PER_SECOND, by role, from seconds of CPU per 1,000 tokens."""
    return {role: seconds * TOKENS_PER_SECOND for role, seconds in token.items() if role in (*ROLES, "system")}


def per_hundred_starts(start: dict[str, float]) -> dict[str, float]:
    """Cores per 100 starts a second, by role, from milliseconds of CPU per start."""
    return {role: ms / 10 for role, ms in start.items() if role in (*ROLES, "system")}


def sizing(figures: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Cores per 1,000 streams and per 100 starts/s, by topology and role, from bench/cluster.py's figures."""
    token, start = figures["per_token"], figures["per_start"]
    start = start.get("counting_what_it_leaves", start)  # a start's whole cost, its reaper's looks too
    return {
        side: {"streams": per_thousand_streams(token[side]), "starts": per_hundred_starts(start[side])}
        for side in cluster.SIDES
    }


def ceiling(cores: dict[str, dict[str, float]], role: str, streams_k: float = 0.0) -> float:
    """The starts a second one process of `role` takes at HEADROOM beside `streams_k` thousand streams."""
    left = HEADROOM - streams_k * cores["streams"].get(role, 0.0)
    per_start = cores["starts"].get(role, 0.0) / 100
    return max(0.0, left) / per_start if per_start else math.inf


def fleet(cores: dict[str, dict[str, float]], streams: int, starts: float, concurrency: int) -> dict[str, float]:
    """Processes of each role for `streams` streams and `starts` starts/s (workers also by how many runs
    each streams at once: `TOKENTAIL_WORKER_CONCURRENCY`)."""
    need = {
        role: streams / 1000 * cores["streams"].get(role, 0.0) + starts / 100 * cores["starts"].get(role, 0.0)
        for role in ROLES
    }
    need["Redis"] -= need["queue Redis"]  # on a cluster, the primaries' share (the queue's is its own)
    processes = {role: math.ceil(need[role] / HEADROOM) for role in ROLES if role in cores["streams"]}
    processes["worker"] = max(processes["worker"], math.ceil(streams / concurrency))
    return processes


def rows(figures: dict[str, Any]) -> list[tuple[str, ...]]:
    """The cores table: per 1,000 streams, per 100 starts/s, by topology, and where a single Redis tops out."""
    table: list[tuple[str, ...]] = [("cores", *ROLES, "system")]
    sized = sizing(figures)
    for unit, label in (("streams", "per 1,000 streams (50 tokens/s)"), ("starts", "per 100 starts/s")):
        for side, name in (("one", "one Redis"), ("cluster", "cluster")):
            cells = sized[side][unit]
            table.append((f"{label}, {name}", *(f"{cells[r]:.3f}" if r in cells else "" for r in (*ROLES, "system"))))
    return table


def limits(figures: dict[str, Any]) -> list[str]:
    """Where a single Redis tops out: one Redis (everything), and the cluster's queue Redis."""
    sized = sizing(figures)
    one, apart = sized["one"], sized["cluster"]
    streams_alone = HEADROOM / one["streams"]["Redis"] * 1000
    return [
        f"one Redis at {HEADROOM:.0%} of a core: {streams_alone:,.0f} streams alone, {ceiling(one, 'Redis'):,.0f}"
        f" starts/s alone, {ceiling(one, 'Redis', 0.5):,.0f} starts/s beside 500 streams",
        f"the cluster's queue Redis at {HEADROOM:.0%} of a core: {ceiling(apart, 'queue Redis'):,.0f} starts/s"
        f" ({apart['starts']['queue Redis'] * 10:.3f} ms of its CPU per start;"
        f" {apart['streams']['queue Redis']:.3f} cores per 1,000 streams beside)",
    ]


def print_fleet(figures: dict[str, Any], streams: int, starts: float, concurrency: int) -> None:
    """The processes a fleet needs for `streams` and `starts`, on one Redis and on a cluster, printed."""
    for side, name in (("one", "one Redis"), ("cluster", "a cluster")):
        cores = sizing(figures)[side]
        processes = fleet(cores, streams, starts, concurrency)
        redis = processes.pop("Redis")
        shown = f"{processes['gateway']} gateways, {processes['worker']} workers"
        if side == "one":
            fits = "fits" if redis <= 1 else f"does not fit: {redis} Redis cores' worth; take a cluster"
            print(f"  {streams:,} streams and {starts:g} starts/s on {name}: {shown}; one Redis {fits}")
        else:
            queue = ceiling(cores, "queue Redis", streams / 1000)
            print(
                f"  {streams:,} streams and {starts:g} starts/s on {name}: {shown}, {redis} primaries and"
                f" the queue Redis (which takes {queue:,.0f} starts/s at most beside these streams)"
            )


def report(figures: dict[str, Any], streams: int = 10_000, starts: float = 200, concurrency: int = 100) -> None:
    """The cores table, where a single Redis tops out, and a fleet for `streams` and `starts`, printed."""
    print("== Capacity: cores per 1,000 streams and per 100 starts/s (bench/capacity.py)")
    harness.print_table(rows(figures))
    for line in limits(figures):
        print(f"  {line}")
    print_fleet(figures, streams, starts, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", help="bench.py --redis cluster's --json output: size from it")
    parser.add_argument("--quick", action="store_true", help="a small measurement, to check the script")
    parser.add_argument("--json", help="write the measured figures and the sizing here")
    parser.add_argument("--streams", type=int, default=10_000, help="a fleet for this many streams (50 tokens/s)")
    parser.add_argument("--starts", type=float, default=200, help="... and this many starts a second")
    parser.add_argument("--concurrency", type=int, default=100, help="TOKENTAIL_WORKER_CONCURRENCY")
    args = parser.parse_args()
    if args.source:
        with open(args.source) as file:
            loaded = json.load(file)
        figures = loaded.get("cluster", loaded)
    else:
        harness.calibrate()
        figures = uvloop.run(cluster.against_one_redis(tempfile.mkdtemp(prefix="capacity-"), args.quick))
    if "per_start" not in figures or "queue Redis" not in figures["per_start"]["cluster"]:
        sys.exit("capacity: figures of bench/cluster.py without a start phase or the queue Redis apart (re-run them)")
    report(figures, args.streams, args.starts, args.concurrency)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"cluster": figures, "sizing": sizing(figures)}, file, indent=2)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
