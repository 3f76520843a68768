"""tokentail's benchmark: queue pickup and events per token, then side by side with the naive
gateway and Vercel's resumable-stream (bench/compare.py).

    ./scripts/install bench && .venv/bin/python bench/bench.py   # the full run (see docs/benchmarks.md)
    .venv/bin/python bench/bench.py --quick                      # a small run, to check the script itself

Everything runs here as real processes, as in production: private redis-servers, one gateway
and one worker (or producer) process per system. The load generator (raw asyncio sockets, uvloop)
shares the same cores, so capacity figures are lower bounds. Figures are printed, never
asserted; ratios compare systems measured in this same invocation.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import uvloop
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.keys import Keys  # noqa: E402
from tokentail.redis_server import RedisServer, free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def box_cpu_seconds() -> float:
    """CPU time this machine has been busy, all cores: user, nice, system, irq and softirq. Interrupts
    count too: without IRQ time accounting, a tick spent in one is charged to the task it interrupted
    (in its /proc/<pid>/stat) but to irq or softirq here, and a loopback benchmark spends many. (With
    IRQ time accounting, the "other work" derived from this would include the benchmark's interrupts.)"""
    user, nice, system, _idle, _iowait, irq, softirq = Path("/proc/stat").read_text().split(maxsplit=8)[1:8]
    return (int(user) + int(nice) + int(system) + int(irq) + int(softirq)) / TICKS


class OtherWork:
    """CPU the rest of the machine uses from now on (beyond `pids` and this process), as a share of
    one core: what a phase measured once, not repeated, was disturbed by on a shared box."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.began, self.other = self._reading()

    def _reading(self) -> tuple[float, float]:
        ours = sum(cpu_seconds(pid) for pid in self.pids) + time.process_time()
        return time.monotonic(), box_cpu_seconds() - ours

    def share(self) -> float:
        now, other = self._reading()
        return (other - self.other) / (now - self.began)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


class Stack:
    def __init__(self, data_dir: str) -> None:
        self.redis = RedisServer(data_dir).start()
        self.prefix = f"bench-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.env = {
            **os.environ,
            "TOKENTAIL_REDIS_URL": self.redis.url,
            "TOKENTAIL_LOG_LEVEL": "warning",
            # The benchmarks measure the gateway and workers, not the tenant limits they would hit.
            "TOKENTAIL_RUNS_PER_MINUTE": "0",
            "TOKENTAIL_MAX_STREAMS_PER_TENANT": "0",
        }
        self.gateway: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    def _spawn(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        environment = {**self.env, "TOKENTAIL_KEY_PREFIX": self.prefix, **env}
        return subprocess.Popen([sys.executable, "-m", "tokentail.cli", *args], env=environment, cwd=ROOT)

    def start(self, **worker_env: str) -> None:
        """(Re)start both processes on a fresh key prefix, the worker with `worker_env`."""
        self.stop()
        self.prefix = f"bench-{uuid.uuid4().hex[:6]}"
        self.gateway = self._spawn("gateway", "--host", "127.0.0.1", "--port", str(self.port))
        self.worker = self._spawn("worker", "--port", "0", **worker_env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)  # let the worker subscribe and poll once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        processes = (self.gateway, self.worker, self.redis.process)
        return [process.pid for process in processes if process is not None]

    def stop(self) -> None:
        for process in (self.gateway, self.worker):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)

    def close(self) -> None:
        self.stop()
        self.redis.stop()


@dataclass
class Frame:
    id: int
    event: bytes
    data: bytes
    received: float


async def read_sse(port: int, path: str, on_frame: Callable[[Frame], bool] | None = None) -> list[Frame]:
    """A minimal SSE reader on a raw socket (HTTP/1.1, chunked): cheap enough for hundreds of streams."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    frames: list[Frame] = []
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        writer.close()
        return frames
    buffer = b""
    try:
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                break
            buffer += (await reader.readexactly(size + 2))[:-2]
            now = time.time()
            *complete, buffer = buffer.split(b"\n\n")
            for raw in complete:
                fields = dict(line.split(b": ", 1) for line in raw.split(b"\n") if line and not line.startswith(b":"))
                if b"id" in fields:
                    frame = Frame(int(fields[b"id"]), fields[b"event"], fields[b"data"], now)
                    frames.append(frame)
                    if on_frame is not None and on_frame(frame):
                        return frames
    finally:
        writer.close()
    return frames


async def create(client: httpx2.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.post("/v1/sessions", json={"input": "benchmark", "model": "scripted", "params": params})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


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


@dataclass
class Level:
    streams: int
    delays_ms: list[float] = field(default_factory=list)
    events: int = 0
    incomplete: int = 0
    gateway_cpu: float = 0.0
    worker_cpu: float = 0.0
    redis_cpu: float = 0.0
    client_cpu: float = 0.0
    seconds: float = 0.0

    @property
    def p50(self) -> float:
        return percentile(self.delays_ms, 50) if self.delays_ms else float("nan")

    @property
    def p99(self) -> float:
        return percentile(self.delays_ms, 99) if self.delays_ms else float("nan")


async def capacity_level(stack: Stack, streams: int, tokens: int) -> Level:
    """`streams` concurrent runs at 50 tokens/s, each read by one SSE client: append -> receipt delay."""
    assert stack.gateway is not None and stack.worker is not None and stack.redis.process is not None
    level = Level(streams)
    redis = Redis.from_url(stack.redis.url)
    keys = Keys(stack.prefix)
    pids = (stack.gateway.pid, stack.worker.pid, stack.redis.process.pid)
    cpu_before = [cpu_seconds(pid) for pid in pids] + [time.process_time()]
    started = time.monotonic()
    async with httpx2.AsyncClient(base_url=stack.url, limits=httpx2.Limits(max_connections=50)) as client:

        async def one(delay: float) -> None:
            await asyncio.sleep(delay)  # spread the starts over a second, as real traffic would be
            created = await create(client, tokens=tokens, tokens_per_second=50)
            frames = await read_sse(stack.port, f"/v1/sessions/{created['session_id']}/events")
            if not frames or frames[-1].event != b"run.completed":
                level.incomplete += 1
            entries = await redis.xrange(keys.session(created["session_id"]).events)
            appended = {int(entry_id.split(b"-")[0]): int(fields[b"ts"]) / 1e6 for entry_id, fields in entries}
            for frame in frames:
                if frame.event == b"message.delta":
                    level.delays_ms.append((frame.received - appended[frame.id]) * 1000)
            level.events += len(frames)

        await asyncio.gather(*(one(i / streams) for i in range(streams)))
    level.seconds = time.monotonic() - started
    cpu_after = [cpu_seconds(pid) for pid in pids] + [time.process_time()]
    level.gateway_cpu, level.worker_cpu, level.redis_cpu, level.client_cpu = (
        (after - before) / level.seconds for before, after in zip(cpu_before, cpu_after, strict=True)
    )
    await redis.aclose()
    return level


async def main(
    quick: bool, output: str | None, repeats: int, levels: list[int], systems: list[str], max_other: float
) -> None:
    import compare  # here: it builds on this module

    began = time.monotonic()
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "options": {"quick": quick, "repeats": repeats, "levels": levels, "systems": systems, "max_other": max_other},
    }
    with tempfile.TemporaryDirectory() as data_dir:
        stack = Stack(data_dir)
        try:
            print("== queue pickup: enqueue -> run.started at the client, one run at a time")
            stack.start()
            meter = OtherWork(stack.pids)
            woken = await pickup_latency(stack, 20 if quick else 200)
            woken["other_cpu_share"] = meter.share()
            stack.start(TOKENTAIL_WORKER_WAKEUPS="false")
            meter = OtherWork(stack.pids)
            polled = await pickup_latency(stack, 10 if quick else 60)
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

        finally:
            stack.close()
        print(f"  ({time.monotonic() - began:.0f} s so far)")
        print(f"== side by side: {', '.join(systems)}")
        results["side_by_side"] = await compare.compare(data_dir, quick, repeats, levels, systems, max_other)
    results["seconds"] = round(time.monotonic() - began)
    if output:
        Path(output).write_text(json.dumps(results, indent=2))  # noqa: ASYNC240  # once, at the end
    print(
        f"== summary, after {results['seconds']} s"
        f" (ratios: how many times better tokentail is; costs at {levels[0]} streams)"
    )
    for row in compare.table(results["side_by_side"], levels[0]):
        print("  | " + " | ".join(row) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs and levels")
    parser.add_argument("--json", dest="output", help="also write the figures to this file")
    parser.add_argument("--repeats", type=int, help="repetitions of each level (3, or 1 with --quick)")
    parser.add_argument("--levels", help="comma-separated numbers of concurrent streams to try, in order")
    parser.add_argument(
        "--systems",
        default="tokentail,naive,vercel-rs",
        help="comma-separated, in order, from: tokentail, naive, vercel-rs, tokentail-gateway"
        " (tokentail's gateway fed by bench/light_producer.py instead of a worker: capacity only)",
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.25,
        help="run a level again when the rest of the machine used more than this share of a core meanwhile"
        " (default 0.25; at most twice the repeats more)",
    )
    args = parser.parse_args()
    default_levels = "25,50" if args.quick else "100,200,400,600,800,1000,1200,1500"
    levels = [int(level) for level in (args.levels or default_levels).split(",")]
    repeats = args.repeats or (1 if args.quick else 3)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # figures appear as measured
    systems = args.systems.split(",")
    if unknown := [name for name in systems if name not in ("tokentail", "naive", "vercel-rs", "tokentail-gateway")]:
        parser.error(f"unknown systems: {', '.join(unknown)}")
    uvloop.run(main(args.quick, args.output, repeats, levels, systems, args.max_other))
