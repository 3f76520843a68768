"""The resume of a backlog, this tree's gateway against another revision's, in turns on one Redis.

    cd bench && ../.venv/bin/python resume_against.py --ref main                # 10,000 events, 5 rounds of 10 reads
    cd bench && ../.venv/bin/python resume_against.py --ref main -n 1000 --rounds 3
    .venv/bin/python bench/resume_against.py --quick --ref HEAD   # a check of the script (CI), not a figure

Both gateways (with their workers, stopped while the backlog is written: systems.Tokentail.backlog)
run at once on one private redis-server, each with a backlog of its own, as long, written the same
way. A round reads each backlog `--repeats` times (one client at a time, from the start, as
compare.resume_backlog does), one gateway then the other, which goes first in the next round.
Printed: each round's medians, then the medians over the rounds of the first and last token event
(ms after the request) and of the gateway's and Redis's CPU per resume (from /proc: 10 ms ticks,
over all the round's reads), and their ratios (this tree / the revision). The box's load goes
beside: figures of one run are compared with each other, not with another run's.
"""

import argparse
import asyncio
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import baseline
import harness
import httpx2
import uvloop
from compare import read_backlog
from systems import Tokentail

from tokentail.redis_server import RedisServer


async def measure(ref: str, events: int, repeats: int, rounds: int) -> dict[str, dict[str, float]]:
    commit = baseline.commit_of(ref)
    assert commit is not None, f"no commit {ref}"
    with tempfile.TemporaryDirectory() as data_dir, RedisServer(Path(data_dir)) as redis:
        theirs, ours = Tokentail(redis), Tokentail(redis)
        theirs.tree = baseline.gateway_tree(commit, Path(data_dir) / "tree")
        systems = {ref: theirs, "tree": ours}
        try:
            paths = {}
            for label, system in systems.items():
                await system.restart()
                async with httpx2.AsyncClient(base_url=system.url, timeout=harness.patience(120)) as client:
                    paths[label] = await system.backlog(client, events)
            await asyncio.sleep(1)
            for label, system in systems.items():  # a first read each, not counted: imports, caches
                await read_backlog(system, paths[label], events, 1)
            measured: dict[str, list[dict[str, float]]] = {label: [] for label in systems}
            for round_ in range(rounds):
                load = os.getloadavg()[0]
                turns = list(systems.items())
                for label, system in turns if round_ % 2 == 0 else reversed(turns):  # each goes first as often
                    assert system.gateway is not None
                    assert redis.process is not None
                    cpu = harness.cpu_seconds(system.gateway.pid), harness.cpu_seconds(redis.process.pid)
                    figures = await read_backlog(system, paths[label], events, repeats)
                    figures["gateway_cpu_ms"] = (harness.cpu_seconds(system.gateway.pid) - cpu[0]) * 1000 / repeats
                    figures["redis_cpu_ms"] = (harness.cpu_seconds(redis.process.pid) - cpu[1]) * 1000 / repeats
                    measured[label].append(figures)
                    cells = " ".join(f"{name} {value:.2f}" for name, value in figures.items())
                    print(f"  round {round_ + 1} {label:>8}: {cells} (load {load:.2f})", flush=True)
        finally:
            for system in systems.values():
                system.stop()
    medians = {
        label: {name: statistics.median(r[name] for r in runs) for name in runs[0]} for label, runs in measured.items()
    }
    ours, theirs = medians["tree"], medians[ref]  # a CPU figure under a tick of /proc is 0: no ratio
    medians["tree / " + ref] = {name: ours[name] / theirs[name] if theirs[name] else math.nan for name in ours}
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="main", help="the revision to measure this tree against")
    parser.add_argument("-n", "--events", type=int, default=10_000, help="token events in each backlog")
    parser.add_argument("-r", "--repeats", type=int, default=10, help="reads of each backlog per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1,000 events, 2 rounds of 3 reads: the script runs")
    args = parser.parse_args()
    if args.quick:
        args.events, args.repeats, args.rounds = 1000, 3, 2
    if baseline.commit_of(args.ref) is None:
        parser.error(f"--ref: no commit {args.ref!r} in this repository")
    began, load = time.monotonic(), os.getloadavg()
    medians = uvloop.run(measure(args.ref, args.events, args.repeats, args.rounds))
    print(f"== resume of a {args.events:,}-event backlog, medians of {args.rounds} rounds of {args.repeats} reads")
    for label, figures in medians.items():
        print(f"  {label:>12}: " + " ".join(f"{name} {value:.2f}" for name, value in figures.items()))
    print(f"  load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}; {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
