"""tokentail's benchmark: queue pickup, events per token and the gateway's CPU by encoding
(bench/encodings_phase.py), then side by side with the naive gateway, Vercel's resumable-stream and
the Durable Streams reference server (bench/compare.py), and a summary (bench/report.py): the
headline figures with ratios, the latency-versus-load curve, CPU per 1,000 tokens by process, and
issue 43's goals, each met or not.

    ./scripts/install bench && .venv/bin/python bench/bench.py   # the full run (see docs/benchmarks.md)
    .venv/bin/python bench/bench.py --quick                      # a small run, to check the script itself
    .venv/bin/python bench/bench.py --quick --baseline main      # ... with main's gateway measured beside
    .venv/bin/python bench/bench.py --redis cluster              # CPU on a Redis Cluster against one Redis
    .venv/bin/python bench/bench.py --redis cluster --baseline main   # ... per token, this tree's and main's

The encodings phase measures every encoding a client follows a run in (native SSE, NDJSON, WebSocket,
the AI SDK over HTTP and WebSocket, AG-UI, the Responses API): gateway CPU per text delta delivered
live, and per resume of a completed run (native and Responses). With `--baseline REV` it runs on
two gateways at once, this tree's and revision REV's (bench/baseline.py), in turns, and prints both
and their ratio: before and after from one run.

`--redis cluster` measures tokentail alone, its sessions on a local Redis Cluster of three primaries
and its queue on a Redis of its own, against one Redis, in turns (bench/cluster.py): each process's
CPU per 1,000 tokens and per start on both, and their ratios, then the cores a deployment needs
from them (bench/capacity.py). That is all it runs. With `--baseline
REV`, per 1,000 tokens only, on both, for this tree and for revision REV, all four in turns.

Everything runs here as real processes, as in production: private redis-servers, one gateway
and one worker (or producer) process per system (Durable Streams: its server, on its own files, and
a producer). The load generator (raw asyncio sockets, uvloop) shares the same cores, so capacity
figures are lower bounds. Figures are printed, never asserted; ratios compare systems measured in
this same invocation. A calibration first measures how slow the box is now, and every wait for a
process scales with it (harness.calibrate): a busy box gives worse figures, not a failed run.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import baseline as baseline_tree
import capacity
import cluster
import compare
import encodings_phase
import harness
import httpx2
import levels
import report
import starts
import systems as systems_module
import uvloop
from harness import OtherWork, Stack, create, percentile, print_table, read_sse
from redis.asyncio import Redis
from systems import TOKENS, Tokentail

from tokentail.redis_server import RedisServer
from tokentail.shared.store.keys import Keys


async def pickup_latency(stack: Stack, runs: int) -> dict[str, float]:
    """Enqueue (before the POST) -> `run.started` received by an SSE client, one run at a time.

    A random pause before each run keeps arrivals out of step with any timed poll, as real traffic is.
    """
    rng = random.Random(1)
    redis = Redis.from_url(stack.redis.url)
    client_ms: list[float] = []
    redis_ms: list[float] = []
    async with httpx2.AsyncClient(base_url=stack.url) as client:
        for _ in range(runs):
            await asyncio.sleep(rng.uniform(0, 0.5))
            start = time.time()
            created = await create(client, tokens=1, tokens_per_second=0)
            path = f"/v1/sessions/{created['session_id']}/events"
            frames = await read_sse(stack.port, path, lambda f: f.event == b"run.started")
            client_ms.append((frames[-1].received - start) * 1000)
            entries = await redis.xrange(Keys(stack.prefix).session(created["session_id"]).events, count=2)
            queued_us, started_us = (int(fields[b"ts"]) for _, fields in entries)
            redis_ms.append((started_us - queued_us) / 1000)
    await redis.aclose()
    return {
        "p50_ms": percentile(client_ms, 50),
        "p99_ms": percentile(client_ms, 99),
        "queued_to_started_p50_ms": percentile(redis_ms, 50),
        "queued_to_started_p99_ms": percentile(redis_ms, 99),
    }


async def events_per_token(stack: Stack, streams: int, tokens: int) -> float:
    """message.delta events appended per token, `streams` runs at 50 tokens/s each."""
    async with httpx2.AsyncClient(base_url=stack.url) as client:
        sessions = [await create(client, tokens=tokens, tokens_per_second=50) for _ in range(streams)]
        results = await asyncio.gather(
            *(read_sse(stack.port, f"/v1/sessions/{s['session_id']}/events") for s in sessions)
        )
    deltas = sum(1 for frames in results for f in frames if f.event == b"message.delta")
    return deltas / (streams * tokens)


async def main(
    quick: bool,
    output: str | None,
    repeats: int,
    levels: list[int],
    systems: list[str],
    max_other: float,
    baseline: str | None,
    aof: tuple[str, ...],
    redis: str = "one",
) -> None:
    began = time.monotonic()
    slowness = harness.calibrate()
    print(f"== calibration: this box takes {slowness:.2f}x the reference box's time; waits scale with it")
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0], "slowness": round(slowness, 2)},
        "options": {
            "quick": quick,
            "repeats": repeats,
            "levels": levels,
            "systems": systems,
            "max_other": max_other,
            "baseline": baseline,
            "clock": systems_module.CLOCK,
            "redis_aof": aof,
            "redis": redis,
        },
    }
    if redis == "cluster":
        await cluster_mode(results, quick, output, began, baseline, max_other)
        return
    with tempfile.TemporaryDirectory() as data_dir:
        stack = Stack(data_dir)
        try:
            print("== queue pickup: enqueue -> run.started at the client, one run at a time")
            stack.start()
            meter = OtherWork(stack.pids)
            woken = await pickup_latency(stack, 10 if quick else 200)
            woken["other_cpu_share"] = meter.share()
            stack.start(TOKENTAIL_WORKER_WAKEUPS="false")
            meter = OtherWork(stack.pids)
            polled = await pickup_latency(stack, 5 if quick else 60)
            polled["other_cpu_share"] = meter.share()
            results["pickup"] = {"wakeup": woken, "arq_poll_0.5s": polled}
            for name, figures in results["pickup"].items():
                print(
                    f"  {name:14} p50 {figures['p50_ms']:7.1f} ms   p99 {figures['p99_ms']:7.1f} ms"
                    f"   (run.queued -> run.started in Redis: p50 {figures['queued_to_started_p50_ms']:.1f} ms,"
                    f" p99 {figures['queued_to_started_p99_ms']:.1f} ms)  (other CPU {figures['other_cpu_share']:.0%})"
                )
            print(f"  wake-up vs plain poll, p50: {polled['p50_ms'] / woken['p50_ms']:.0f}x faster")

            print("== events appended per token at 50 tokens/s")
            per_token = {}
            for window in ("0", "50"):
                stack.start(TOKENTAIL_FLUSH_INTERVAL_MS=window)
                per_token[window] = await events_per_token(stack, streams=10, tokens=100 if quick else 250)
                print(f"  flush window {window:>2} ms: {per_token[window]:.2f} events per token")
            results["events_per_token"] = per_token
            print(f"  coalescing saves {1 - per_token['50'] / per_token['0']:.0%} of appends")

            results["encodings"] = await encodings_phase.measure(stack, data_dir, quick, baseline)
            results["caps_cost"] = await caps_cost(data_dir, quick)

        finally:
            stack.close()
        if baseline is not None:
            results["start_cpu_against_baseline"] = await start_cpu_against(baseline, data_dir, quick)
            results["per_token_against_baseline"] = await per_token_against(baseline, data_dir, quick, aof[0])
            results["idle_and_resume_against_baseline"] = await idle_and_resume_against(baseline, data_dir, quick)
        print(f"  ({time.monotonic() - began:.0f} s so far)")
        print(f"== side by side: {', '.join(systems)}")
        results["side_by_side"] = await compare.compare(data_dir, quick, repeats, levels, systems, max_other, aof)
    results["seconds"] = round(time.monotonic() - began)
    if output:
        Path(output).write_text(json.dumps(results, indent=2))  # noqa: ASYNC240  # once, at the end
    print(
        f"== summary, after {results['seconds']} s"
        f" (ratios: how many times better tokentail is; costs at {levels[0]} streams)"
    )
    side_by_side = results["side_by_side"]
    print_table(report.table(side_by_side, levels[0]))
    print("== delivery delay by load: p50 / p99 ms (median of the repeats), streams started in a burst, then spread")
    print_table(report.curve(side_by_side))
    print("== CPU s per 1,000 delivered tokens, by process (steady part, median of the repeats)")
    print_table(report.cpu_by_process(side_by_side))
    print(f"== issue 83's goals (tokentail; ratios against vercel-rs, and against {baseline or 'a --baseline'})")
    goals = report.goals(
        side_by_side,
        aof,
        results.get("per_token_against_baseline"),
        baseline,
        results.get("start_cpu_against_baseline"),
        results.get("idle_and_resume_against_baseline"),
    )
    print_table([("goal", "this run", ""), *goals])
    steps = report.against(
        results.get("per_token_against_baseline"), results.get("start_cpu_against_baseline"), baseline
    )
    if steps:
        print(f"== this tree against {baseline}, in turns on one Redis")
        print_table([("figure", "this run"), *steps])


async def cluster_mode(
    results: dict[str, Any], quick: bool, output: str | None, began: float, baseline: str | None, max_other: float
) -> None:
    """`--redis cluster`: CPU per 1,000 tokens and per start on a Redis Cluster against one Redis (with
    a baseline: per 1,000 tokens, this tree's and the baseline's)."""
    with tempfile.TemporaryDirectory() as data_dir:
        results["cluster"] = await cluster.against_one_redis(data_dir, quick, baseline, max_other)
    results["seconds"] = round(time.monotonic() - began)
    if output:
        Path(output).write_text(json.dumps(results, indent=2))  # noqa: ASYNC240  # once, at the end
    print(f"== summary, after {results['seconds']} s: CPU on a Redis Cluster against one Redis (medians)")
    print_table(cluster.rows(results["cluster"]))
    if "per_start" in results["cluster"]:
        capacity.report(results["cluster"])


async def start_cpu_against(
    rev: str, data_dir: str, quick: bool, ours_rev: str | None = None
) -> dict[str, dict[str, float]]:
    """CPU per start of each process, this tree's tokentail (gateway and worker; or revision
    `ours_rev`'s) and revision `rev`'s, in turns on one Redis: a before and after from one run."""
    rate, seconds, rounds = (50, 1.5, 1) if quick else (100, 10.0, 4)
    what = ours_rev or "this tree"
    print(f"== CPU ms per start, {what} against {rev}: {rounds} steps each of {rate} starts/s, in turns")
    folder = Path(data_dir) / "start-cpu"
    folder.mkdir()
    with RedisServer(folder) as redis:
        ours, theirs = _of_revisions(redis, folder, rev, ours_rev)
        try:
            figures = await starts.before_and_after(ours, theirs, rate, seconds, rounds)
        finally:
            ours.stop()
            theirs.stop()
    for label in ("before", "after", "ratio"):
        cells = " ".join(
            f"{role} {value:.2f}{'x' if label == 'ratio' else ''}" for role, value in figures[label].items()
        )
        print(f"  {label + (f' ({rev})' if label == 'before' else ''):14} {cells}")
    return figures


# Caps that never bind at the bench's load: what checking them costs, not what waiting for them does.
CAPS = {
    "TOKENTAIL_MAX_ACTIVE_RUNS_PER_TENANT": "100000",
    "TOKENTAIL_MAX_ACTIVE_RUNS_PER_USER": "100000",
    "TOKENTAIL_TENANT_WEIGHTS": "public:2",
}


async def caps_cost(data_dir: str, quick: bool) -> dict[str, dict[str, float]]:
    """CPU per start of each process with the caps on (shared/features/admission.py) against off, in turns on one
    Redis: what fair admission costs a start, beyond the tenants' lines both have."""
    rate, seconds, rounds = (50, 1.5, 1) if quick else (100, 10.0, 4)
    print(f"== CPU ms per start, caps on against off: {rounds} steps each of {rate} starts/s, in turns")
    folder = Path(data_dir) / "caps-cost"
    folder.mkdir()
    with RedisServer(folder) as redis:
        on, off = Tokentail(redis), Tokentail(redis)
        on.extra_env = CAPS
        try:
            figures = await starts.before_and_after(on, off, rate, seconds, rounds)
        finally:
            on.stop()
            off.stop()
    names = {"before": "caps off", "after": "caps on", "ratio": "ratio"}
    for label, name in names.items():
        cells = " ".join(
            f"{role} {value:.2f}{'x' if label == 'ratio' else ''}" for role, value in figures[label].items()
        )
        print(f"  {name:14} {cells}")
    return figures


def _of_revisions(redis: RedisServer, folder: Path, rev: str, ours_rev: str | None) -> tuple[Tokentail, Tokentail]:
    """tokentail of this tree (or of revision `ours_rev`) and of revision `rev`, on `redis`."""
    ours, theirs = Tokentail(redis), Tokentail(redis)
    for system, revision, name in ((theirs, rev, "tree"), (ours, ours_rev, "ours")):
        if revision is not None:
            commit = baseline_tree.commit_of(revision)
            assert commit is not None, revision  # checked with the arguments
            system.tree = baseline_tree.gateway_tree(commit, folder / name)
    return ours, theirs


async def per_token_against(
    rev: str, data_dir: str, quick: bool, aof: str, ours_rev: str | None = None
) -> dict[str, dict[str, float]]:
    """Worker CPU per 1,000 tokens, Redis CPU per appended event and gateway CPU per delivered event,
    this tree's tokentail against revision `rev`'s, in turns on one Redis (AOF `aof`): a level of 400
    streams (`--quick`: 50) each way, 4 rounds (`--quick`: 1); the medians and their ratios (after /
    before). Timed on the append clock: another revision's scripted model may not stamp its tokens."""
    streams, tokens, rounds = (50, 150, 1) if quick else (400, TOKENS, 4)
    print(
        f"== worker, Redis and gateway CPU per token event, {ours_rev or 'this tree'} against {rev}:"
        f" {rounds} levels of {streams} streams each, in turns"
    )
    folder = Path(data_dir) / "per-token"
    folder.mkdir()
    measured: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with compare.redis_server(folder, aof) as redis:
        ours, theirs = _of_revisions(redis, folder, rev, ours_rev)
        clock, systems_module.CLOCK = systems_module.CLOCK, "append"
        try:
            for label, system in harness.in_turns(rounds, ("before", theirs), ("after", ours)):
                await system.restart()
                run = await levels.run_level(system, streams, tokens)
                system.stop()
                measured[label].append(
                    {
                        "producer": 1000 * run.cpu["producer"] / max(1, run.tokens),
                        "redis": 1e6 * run.cpu["redis"] / max(1, run.events),
                        "gateway": 1e6 * run.cpu["gateway"] / max(1, run.events),
                    }
                )
        finally:
            systems_module.CLOCK = clock
            ours.stop()
            theirs.stop()
    figures = {
        label: {role: statistics.median(step[role] for step in steps) for role in steps[0]}
        for label, steps in measured.items()
    }
    figures["ratio"] = {role: figures["after"][role] / figures["before"][role] for role in figures["after"]}
    for label in ("before", "after", "ratio"):
        worker, redis_us, gateway_us = (figures[label][role] for role in ("producer", "redis", "gateway"))
        unit = ("x", "x", "x") if label == "ratio" else (" s/1k tokens", " µs/event", " µs/event delivered")
        print(
            f"  {label + (f' ({rev})' if label == 'before' else ''):14}"
            f" worker {worker:.4f}{unit[0]}  Redis {redis_us:.2f}{unit[1]}  gateway {gateway_us:.2f}{unit[2]}"
        )
    return figures


async def idle_and_resume_against(rev: str, data_dir: str, quick: bool) -> dict[str, dict[str, float]]:
    """Gateway memory per idle open stream, the resume of a backlog and the reconnect storm
    (bench/compare.py's phases), this tree's tokentail against revision `rev`'s, each on a fresh Redis
    and fresh processes."""
    streams, backlog, repeats = (100, 1000, 2) if quick else (5000, 10_000, 10)
    print(f"== memory per idle stream ({streams}) and the resume of {backlog} events, this tree against {rev}")
    commit = baseline_tree.commit_of(rev)
    assert commit is not None  # checked with the arguments
    figures: dict[str, dict[str, float]] = {}
    for label in ("before", "after"):
        folder = Path(data_dir) / f"absolute-{label}"
        folder.mkdir()
        with RedisServer(folder) as redis:
            system = Tokentail(redis)
            if label == "before":
                system.tree = baseline_tree.gateway_tree(commit, folder / "tree")
            try:
                await system.restart()
                idle = await compare.idle_streams(system, streams)
                await system.restart()
                resume = await compare.resume_backlog(system, backlog, repeats)
                await system.restart()
                storm = await compare.reconnect_storm(system, quick)
                assert storm is not None  # (tokentail's resume is checked)
            finally:
                system.stop()
        figures[label] = {
            "kb_per_stream": idle["kb_per_stream"],
            "resume_last_ms": resume["last_byte_ms"],
            "storm_caught_up_s": storm["all_caught_up_s"],
            "storm_lost_or_repeated": report.storm_lost(storm),
        }
        print(
            f"  {label + (f' ({rev})' if label == 'before' else ''):14} {idle['kb_per_stream']:.1f} KB per idle stream,"
            f" resume: last event {resume['last_byte_ms']:.1f} ms, reconnect storm: all caught up in"
            f" {storm['all_caught_up_s']:.2f} s, {report.storm_lost(storm):g} lost or repeated"
        )
    return figures


def cli() -> None:
    """Parse the arguments and run (a function: names of the command line must not shadow the
    modules of the same names, as `levels` did for `per_token_against`)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs and levels")
    parser.add_argument("--json", dest="output", help="also write the figures to this file")
    parser.add_argument("--repeats", type=int, help="repetitions of each level (3, or 1 with --quick)")
    parser.add_argument("--levels", help="comma-separated numbers of concurrent streams to try, in order")
    parser.add_argument(
        "--systems",
        default="tokentail,naive,vercel-rs,durable-streams",
        help="comma-separated, in order, from: tokentail, naive, vercel-rs, vercel-ai, durable-streams,"
        " tokentail-gateway (vercel-ai: the AI SDK's resumable chat pipeline over vercel-rs's package;"
        " tokentail-gateway: tokentail's gateway fed by bench/light_producer.py instead of a worker;"
        " both capacity only)",
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.25,
        help="run a level again when the rest of the machine used more than this share of a core meanwhile"
        " (default 0.25; at most twice the repeats more)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the encodings phase against the gateway of this git revision (e.g. main), in turns"
        " with this tree's, and print both side by side (with --redis cluster: CPU per 1,000 tokens on the"
        " cluster and on one Redis, this tree's and this revision's, in turns)",
    )
    parser.add_argument(
        "--clock",
        choices=("due", "append"),
        default="due",
        help="what delivery delay is timed from: each token's due time, which every producer stamps (every hop"
        " counts, the producer's too), or when its event was appended (the figure before issue 53); default due",
    )
    parser.add_argument(
        "--redis-aof",
        help="AOF modes of tokentail's Redis, comma-separated: the first measured whole, the others for their"
        " levels only, as 'tokentail (AOF <mode>)' (default everysec,no: as a deployment that promises to"
        " survive a Redis restart runs it, and without; --quick: everysec); the peers' Redis keeps none",
    )
    parser.add_argument(
        "--redis",
        choices=("one", "cluster"),
        default="one",
        help="one: the benchmark on one Redis (the default); cluster: only tokentail's CPU per 1,000 tokens and"
        " per start with its sessions on a local Redis Cluster of three primaries and its queue on a Redis of its"
        " own, against one Redis, in turns (bench/cluster.py; --quick and --json apply)",
    )
    args = parser.parse_args()
    aof = tuple((args.redis_aof or ("everysec" if args.quick else "everysec,no")).split(","))
    if bad := [mode for mode in aof if mode not in ("no", "everysec", "always")]:
        parser.error(f"--redis-aof: no mode {', '.join(bad)} (no, everysec, always)")
    systems_module.CLOCK = args.clock
    default_levels = "25" if args.quick else "100,200,400,600,800,1000,1200,1500,2000,2500"
    levels = [int(level) for level in (args.levels or default_levels).split(",")]
    repeats = args.repeats or (1 if args.quick else 3)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # figures appear as measured
    systems = args.systems.split(",")
    known = ("tokentail", "naive", "vercel-rs", "vercel-ai", "durable-streams", "tokentail-gateway")
    if unknown := [name for name in systems if name not in known]:
        parser.error(f"unknown systems: {', '.join(unknown)}")
    if args.baseline is not None and baseline_tree.commit_of(args.baseline) is None:
        parser.error(f"--baseline: no commit {args.baseline!r} in this repository")
    uvloop.run(main(args.quick, args.output, repeats, levels, systems, args.max_other, args.baseline, aof, args.redis))


if __name__ == "__main__":
    cli()
