"""The worker alone under load: its CPU per 1,000 tokens and the append delay at N concurrent runs.

    .venv/bin/python scripts/bench_worker.py                              # this work tree; 100, 300, 500 runs
    .venv/bin/python scripts/bench_worker.py --ref 8e4cff4 --ref HEAD -l 100 300 500 -r 2   # commits, in turns

Each level: a private redis-server, one `tokentail worker` process (its run limit lifted), and N
sessions queued through the store, each one run of the offline `scripted` model (300 tokens at
50 tokens/s), queued over one second. No gateway runs: the delay is read from the streams
themselves, for every token, from its place in the scripted schedule (the Redis time of its run's
`run.started` plus i / 50 s) to the Redis time of the append that stored it. It includes what the
worker does on purpose: the model's 50 ms tick and the writer's 50 ms coalescing window.

CPU is read from /proc: over the whole level (start to finish of every run), and over its steady
part (after the last run started, before the first one ended). `--ref` runs the worker of a commit
(`git archive` into a temporary directory; the store of this tree queues the runs), so "before"
and "after" are measured in the same command. Figures are printed, never asserted.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.redis_server import RedisServer, free_port
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord

ROOT = Path(__file__).resolve().parents[1]
TOKENS = 300
RATE = 50.0
TICKS = os.sysconf("SC_CLK_TCK")
ENDINGS = {b"run.completed", b"run.failed", b"run.cancelled"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS  # less idle and iowait


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


@dataclass
class Level:
    runs: int
    completed: int = 0
    tokens: int = 0
    deltas: int = 0  # message.delta events
    delays_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)  # p50, p99, max over every token
    cpu_per_1k: float = 0.0  # worker CPU seconds per 1,000 tokens, whole level
    redis_per_1k: float = 0.0
    steady_share: float = float("nan")  # worker CPU as a share of one core, steady part
    steady_per_1k: float = float("nan")
    others: float = 0.0  # CPU of everything else on the machine (cores), this script excluded


def worker_tree(ref: str | None, scratch: Path) -> Path:
    if ref is None:
        return ROOT
    tree = scratch / ref.replace("/", "_")
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    if '"tokentail.worker" = "worker"' in (tree / "pyproject.toml").read_text():
        # Installed inside tokentail (pyproject's package-dir): lay the commit out that way, or the
        # editable install of this tree would answer for its `tokentail.worker`.
        for package in ("gateway", "worker", "shared"):
            (tree / package).rename(tree / "tokentail" / package)
    return tree


def spawn_worker(tree: Path, redis_url: str, prefix: str) -> subprocess.Popen[bytes]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),  # ahead of the editable install of this tree
        "TOKENTAIL_REDIS_URL": redis_url,
        "TOKENTAIL_KEY_PREFIX": prefix,
        "TOKENTAIL_LOG_LEVEL": "warning",
        "TOKENTAIL_WORKER_CONCURRENCY": "5000",
    }
    cli = "tokentail.cli" if (tree / "tokentail" / "cli.py").exists() else "shared.cli"  # where older commits kept it
    command = [sys.executable, "-m", cli, "worker", "--port", str(port)]
    worker = subprocess.Popen(command, env=env, cwd=tree)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.5)  # let it subscribe and poll once
    return worker


async def queue_runs(lifecycle: SessionWrites, count: int) -> list[str]:
    async def one(delay: float) -> str:
        await asyncio.sleep(delay)
        session = SessionRecord(session_id=new_session_id(), created_at=time.time())
        params = {"tokens": TOKENS, "tokens_per_second": RATE}
        run = RunRecord(run_id=new_run_id(), input="benchmark", model="scripted", params=params, queued_at=time.time())
        await lifecycle.queue_run(session.session_id, run, create=session)
        return session.session_id

    return await asyncio.gather(*(one(i / count) for i in range(count)))


async def wait_for_endings(store: SessionStore, sessions: list[str], within: float) -> None:
    waiting, deadline = sessions, time.monotonic() + within
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        async with store.redis.pipeline(transaction=False) as pipe:
            for session_id in waiting:
                pipe.xrevrange(store.keys.session(session_id).events, count=1)
            lasts = await pipe.execute()
        waiting = [
            sid for sid, last in zip(waiting, lasts, strict=True) if not last or last[0][1][b"type"] not in ENDINGS
        ]


def cpu_at(samples: list[tuple[float, float]], at: float) -> float:
    """The CPU seconds at wall time `at`, interpolated between samples."""
    for (t0, c0), (t1, c1) in zip(samples, samples[1:], strict=False):
        if t0 <= at <= t1:
            return c0 + (c1 - c0) * (at - t0) / (t1 - t0)
    return float("nan")


async def level(tree: Path, runs: int) -> Level:
    with tempfile.TemporaryDirectory() as data_dir:
        server = RedisServer(data_dir).start()
        prefix = f"bench-{uuid.uuid4().hex[:6]}"
        worker = spawn_worker(tree, server.url, prefix)
        redis = Redis.from_url(server.url)
        settings = Settings(redis_url=server.url, key_prefix=prefix)
        store, lifecycle = SessionStore(redis, settings), SessionWrites(redis, settings)
        assert server.process is not None
        pids = (worker.pid, server.process.pid)
        samples: list[tuple[float, float]] = []

        async def sample() -> None:
            while True:
                samples.append((time.time(), cpu_seconds(worker.pid)))
                await asyncio.sleep(0.2)

        try:
            sampler = asyncio.create_task(sample())
            before = [cpu_seconds(pid) for pid in (*pids, os.getpid())]
            busy, began = busy_seconds(), time.monotonic()
            sessions = await queue_runs(lifecycle, runs)
            await wait_for_endings(store, sessions, within=60 + TOKENS / RATE + runs / 20)
            after = [cpu_seconds(pid) for pid in (*pids, os.getpid())]
            others = busy_seconds() - busy - sum(after) + sum(before)
            elapsed = time.monotonic() - began
            await asyncio.sleep(0.3)
            sampler.cancel()
            result = Level(runs, others=others / elapsed)
            delays: list[float] = []
            started: list[float] = []
            ended: list[float] = []
            token_times: list[float] = []
            for session_id in sessions:
                events = await store.read(session_id, 0, 10_000)
                start = next((e.ts_us / 1e6 for e in events if e.type == b"run.started"), None)
                if start is None:
                    continue
                started.append(start)
                seen = 0
                for event in events:
                    if event.type == b"message.delta":
                        result.deltas += 1
                        count = len(json.loads(event.data)["text"].split())
                        at = event.ts_us / 1e6
                        delays += [(at - start - i / RATE) * 1000 for i in range(seen, seen + count)]
                        token_times += [at] * count
                        seen += count
                    elif event.type in ENDINGS:
                        ended.append(event.ts_us / 1e6)
                        result.completed += event.type == b"run.completed"
                result.tokens += seen
            result.delays_ms = (percentile(delays, 50), percentile(delays, 99), max(delays, default=float("nan")))
            result.cpu_per_1k = (after[0] - before[0]) / result.tokens * 1000
            result.redis_per_1k = (after[1] - before[1]) / result.tokens * 1000
            if started and ended and min(ended) - max(started) > 1:
                t0, t1 = max(started), min(ended)
                cpu = cpu_at(samples, t1) - cpu_at(samples, t0)
                result.steady_share = cpu / (t1 - t0)
                result.steady_per_1k = cpu / sum(t0 <= t < t1 for t in token_times) * 1000
            return result
        finally:
            await redis.aclose()
            worker.terminate()
            worker.wait(20)
            server.stop()


async def main(refs: list[str | None], levels: list[int], repeats: int) -> None:
    header = (
        "| worker | runs | completed | tokens | delay p50 / p99 / max ms | worker CPU s per 1k tokens"
        " (steady part) | worker CPU, steady | redis CPU s per 1k tokens | deltas per token | other load |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        trees = {ref: worker_tree(ref, Path(scratch)) for ref in refs}
        # The commits take turns at each level, so that whatever else runs on the machine weighs on
        # them alike; "other load" says how much that was.
        for runs in levels:
            for _ in range(repeats):
                for ref, tree in trees.items():
                    r = await level(tree, runs)
                    p50, p99, top = r.delays_ms
                    rows.append(
                        f"| {ref or 'work tree'} | {runs} | {r.completed} | {r.tokens}"
                        f" | {p50:.1f} / {p99:.1f} / {top:.1f} | {r.cpu_per_1k:.4f} ({r.steady_per_1k:.4f})"
                        f" | {r.steady_share:.0%} | {r.redis_per_1k:.4f} | {r.deltas / max(1, r.tokens):.3f}"
                        f" | {r.others:.2f} cores |"
                    )
                    sys.stdout.write(rows[-1] + "\n")
                    sys.stdout.flush()
    sys.stdout.write("\n" + header + "\n".join(rows) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", action="append", help="a commit to measure (repeatable); default: this work tree")
    parser.add_argument("-l", "--levels", type=int, nargs="+", default=[100, 300, 500], help="concurrent runs")
    parser.add_argument("-r", "--repeats", type=int, default=1, help="runs of each commit at each level")
    args = parser.parse_args()
    asyncio.run(main(args.ref or [None], args.levels, args.repeats))
