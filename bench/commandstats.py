"""What Redis runs per token event in a steady level, or per start: `INFO commandstats` over the window.

    cd bench && ../.venv/bin/python commandstats.py --streams 400 [--ref main]
    cd bench && ../.venv/bin/python commandstats.py --streams 400 --redis cluster [--ref c4db358]
    cd bench && ../.venv/bin/python commandstats.py --starts 100 [--redis cluster]

Per token: one level of `--streams` runs (the scripted model's 300 tokens at 50/s, each read by an
SSE client), over its steady part (bench/levels.py), per token event delivered. Per start
(`--starts RATE`): starts at RATE a second for 10 s (bench/starts.py), less what the servers ran
while idle for 5 s just before (the worker's polls, the reaper), per start. tokentail's gateway and
worker (this tree's, or revision REF's) on private redis-servers with AOF `everysec`: one Redis, or
(`--redis cluster`) the sessions on a local Redis Cluster of three primaries and the queue on a
Redis of its own (bench/cluster.py), each command's figures summed over the primaries and apart for
the queue's. Per command, its calls and its own time (`usec`: a script's includes the commands it
calls, which are counted under their own names too); then the servers' read events (`INFO stats`
total_reads_processed: about one a round trip a connection sent) and CPU (`INFO cpu`). A tool to find
what a per-event or per-start figure is made of, not a result to quote.
"""

import argparse
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import baseline as baseline_tree
import cluster
import compare
import levels
import starts
import systems
import uvloop
from redis.asyncio import Redis
from systems import TOKENS, Tokentail

from tokentail.redis_server import RedisServer

Stats = dict[str, tuple[float, float]]  # name -> (calls, µs); "(reads)" and "(cpu)" are the servers'
IDLE_SECONDS = 5.0


async def _stats(servers: list[RedisServer]) -> Stats:
    """Every command's calls and µs, summed over `servers`, with their read events and CPU µs."""
    total: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for server in servers:
        redis = Redis(host="127.0.0.1", port=server.port)
        try:
            commands, stats, cpu = await redis.info("commandstats"), await redis.info("stats"), await redis.info("cpu")
        finally:
            await redis.aclose()
        for name, figures in commands.items():
            total[name.removeprefix("cmdstat_")][0] += int(figures["calls"])
            total[name.removeprefix("cmdstat_")][1] += float(figures["usec"])
        total["(reads)"][0] += int(stats["total_reads_processed"])
        total["(cpu)"][1] += 1e6 * (float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]))
    return {name: (calls, usec) for name, (calls, usec) in total.items()}


def _between(before: Stats, after: Stats, idle: Stats | None = None, scale: float = 0.0) -> Stats:
    """`after - before`, less `scale` times `idle` (what the servers ran idle, for as long)."""
    idle = idle or {}
    return {
        name: (
            calls - before.get(name, (0, 0))[0] - scale * idle.get(name, (0, 0))[0],
            usec - before.get(name, (0, 0))[1] - scale * idle.get(name, (0, 0))[1],
        )
        for name, (calls, usec) in after.items()
        if name != "info"  # ours
    }


async def per_token(
    system: Tokentail, groups: dict[str, list[RedisServer]], streams: int
) -> tuple[dict[str, Stats], int]:
    readings: list[dict[str, Stats]] = []

    async def probe() -> None:
        readings.append({group: await _stats(servers) for group, servers in groups.items()})

    await levels.run_level(system, 50, 150)  # warm: scripts loaded, pools open
    run = await levels.run_level(system, streams, TOKENS, probe=probe)
    print(
        f"level: {streams} streams, {run.events} token events ({run.tokens} tokens) in the {run.seconds:.1f} s window;"
        f" CPU s: {', '.join(f'{role} {cpu:.2f}' for role, cpu in run.cpu.items())}"
    )
    return {group: _between(readings[0][group], readings[1][group]) for group in groups}, run.events


async def per_start(
    system: Tokentail, groups: dict[str, list[RedisServer]], rate: float
) -> tuple[dict[str, Stats], int]:
    await starts.start_step(system, rate, 1.0, dict.fromkeys(system.processes, 0.0))  # warm
    idle_before = {group: await _stats(servers) for group, servers in groups.items()}
    began = time.monotonic()
    idle_cpu = await starts.idle_cpu(system, IDLE_SECONDS)
    idle_seconds = time.monotonic() - began
    idle = {group: _between(idle_before[group], await _stats(servers)) for group, servers in groups.items()}
    before = {group: await _stats(servers) for group, servers in groups.items()}
    began = time.monotonic()
    step = await starts.start_step(system, rate, 10.0, idle_cpu)
    scale = (time.monotonic() - began) / idle_seconds
    after = {group: await _stats(servers) for group, servers in groups.items()}
    print(
        f"step: {step['starts']} starts at {rate}/s, failed {step['failed']}, first token p99"
        f" {step['first_token_p99_ms']:.1f} ms; CPU ms per start:"
        f" {', '.join(f'{role} {ms:.2f}' for role, ms in step['cpu_ms_per_start'].items())}"
    )
    return {group: _between(before[group], after[group], idle[group], scale) for group in groups}, step["starts"]


def report(figures: dict[str, Stats], count: int, unit: str) -> None:
    for group, stats in figures.items():
        commands = {name: value for name, value in stats.items() if not name.startswith("(")}
        own = sum(usec for name, (_, usec) in commands.items() if name not in ("evalsha", "eval", "fcall"))
        scripts = sum(usec for name, (_, usec) in commands.items() if name in ("evalsha", "eval"))
        print(
            f"-- {group}: CPU {stats['(cpu)'][1] / count:.1f} µs/{unit}, read events {stats['(reads)'][0] / count:.3f}"
            f"/{unit}; scripts' time {scripts / count:.1f} µs/{unit}, other commands' {own / count:.1f} µs/{unit}"
            " (a script's own commands counted in both)"
        )
        for name, (calls, usec) in sorted(commands.items(), key=lambda item: -item[1][1])[:16]:
            if calls > 0.5:
                print(
                    f"  {name:14} {calls / count:8.3f} calls/{unit}  {usec / count:7.2f} µs/{unit}"
                    f"  {usec / max(1, calls):6.1f} µs/call"
                )


async def main(streams: int, rate: float | None, ref: str | None, redis: str) -> None:
    systems.CLOCK = "append" if redis == "one" else "due"  # another revision's scripted model may not stamp its tokens
    with tempfile.TemporaryDirectory() as folder, ExitStack() as servers:
        if redis == "cluster":
            sessions, queue = servers.enter_context(cluster.on_a_cluster(Path(folder)))
            system: Tokentail = cluster.ClusterTokentail(sessions, queue)
            groups = {"the cluster's primaries": sessions.nodes, "the queue's Redis": [queue]}
        else:
            one = servers.enter_context(compare.redis_server(Path(folder), "everysec"))
            system, groups = Tokentail(one), {"Redis": [one]}
        if ref and redis == "cluster":  # timed by due stamps: REV's scripted model must make them
            system.tree, system.due_stamps = cluster.tree_of(ref, Path(folder) / "tree"), True
        elif ref:
            commit = baseline_tree.commit_of(ref)
            assert commit is not None
            system.tree = baseline_tree.gateway_tree(commit, Path(folder) / "tree")
        await system.restart()
        try:
            if rate is None:
                figures, count = await per_token(system, groups, streams)
            else:
                figures, count = await per_start(system, groups, rate)
        finally:
            system.stop()
    report(figures, count, "event" if rate is None else "start")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--starts", type=float, metavar="RATE", help="per start, at RATE a second, not per token")
    parser.add_argument("--ref")
    parser.add_argument("--redis", choices=("one", "cluster"), default="one")
    args = parser.parse_args()
    uvloop.run(main(args.streams, args.starts, args.ref, args.redis))
