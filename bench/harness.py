"""What both benchmark modules measure with: CPU readings from /proc, percentiles, tokentail's
processes on a private Redis (`Stack`), and a raw-socket SSE reader cheap enough for thousands of
streams."""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from tokentail.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]

TICKS = os.sysconf("SC_CLK_TCK")

# How many times longer this machine takes than the reference box (the quiet 2-vCPU box of
# docs/benchmarks.md) for the same work, measured once at the start of a run by `calibrate()`.
# Every wait for a process (to start, to answer, to stop) is scaled by it: a slow or busy box must
# not fail the benchmark where the reference box would not. Figures are never scaled.
SLOWNESS = 1.0
REFERENCE_SECONDS = 0.062  # `_calibration_work` on the reference box: the fastest of many tries


def _calibration_work() -> None:
    """What the load generator and the Python processes do most: JSON in and out, bytes split."""
    event = {"run_id": "run_0123456789abcdef", "text": " token" * 4, "t": 1764000000000.5}
    for _ in range(20_000):
        json.loads(json.dumps(event))["text"].split()


def calibrate() -> float:
    """Measure how slow the box is now, set SLOWNESS from it (1 to 10) and return it: the median of
    15 tries of the work against the reference (wall clock, so a core shared counts), or, if more,
    the share of the cores other work leaves (the benchmark's processes, four or more, need them all)."""
    global SLOWNESS
    cores = os.cpu_count() or 1
    meter = OtherWork([])
    tries = []
    for _ in range(15):
        began = time.perf_counter()
        _calibration_work()
        tries.append(time.perf_counter() - began)
    left = max(0.5, cores - meter.share())
    SLOWNESS = min(10.0, max(1.0, statistics.median(tries) / REFERENCE_SECONDS, cores / left))
    return SLOWNESS


def patience(seconds: float) -> float:
    """`seconds` on the reference box, on this one."""
    return seconds * SLOWNESS


def stop_process(process: subprocess.Popen[bytes] | None, seconds: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `seconds` (scaled): a worker handing over
    thousands of runs on a busy box may take longer than any fixed wait, and the benchmark goes on."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(patience(seconds))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


def in_turns(rounds: int, first: Any, second: Any) -> Iterator[Any]:
    """`first` and `second` in turns for `rounds` rounds, each going first in every other round: a
    comparison on one Redis must not favour a side by its place (the Redis's memory and AOF grow level
    by level). It did not remove all of it: docs/benchmarks.md, issue 69's section."""
    for i in range(rounds):
        yield from (first, second) if i % 2 == 0 else (second, first)


def print_table(rows: list[tuple[str, ...]]) -> None:
    for row in rows:
        print("  | " + " | ".join(row) + " |")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


class Stack:
    gateway_tree: Path | None = None  # also for a Stack made without __init__ (systems.py's)
    worker_tree: Path | None = None  # the same, for the worker (bench/starts.py's `before_and_after`)

    def __init__(self, data_dir: str, gateway_tree: Path | None = None, **env: str) -> None:
        """`gateway_tree`: a folder whose `tokentail` package the gateway runs instead of this one's
        (bench/baseline.py); the workers always run this one's."""
        self.gateway_tree = gateway_tree
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
            **env,
        }
        self.gateway: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    def _spawn(self, tree: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
        environment = {**self.env, "TOKENTAIL_KEY_PREFIX": self.prefix, **env}
        if tree != ROOT:  # `-m` puts the working directory first on the import path; PYTHONPATH for any child
            environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), environment.get("PYTHONPATH")]))
        return subprocess.Popen([sys.executable, "-m", "tokentail.cli", *args], env=environment, cwd=tree)

    def start(self, with_worker: bool = True, **worker_env: str) -> None:
        """(Re)start both processes (or the gateway alone) on a fresh key prefix, the worker with `worker_env`."""
        self.stop()
        self.prefix = f"bench-{uuid.uuid4().hex[:6]}"
        self.gateway = self._spawn(
            self.gateway_tree or ROOT, "gateway", "--host", "127.0.0.1", "--port", str(self.port)
        )
        self.worker = self._spawn_worker(**worker_env) if with_worker else None
        deadline = time.monotonic() + patience(20)
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=patience(1)):
                    break
            except OSError:
                time.sleep(0.05)
        time.sleep(patience(0.5))  # let the worker subscribe and poll once

    def start_worker(self, **worker_env: str) -> None:
        """The worker alone, beside a gateway started without one (`start(with_worker=False)`), on its
        key prefix: what was written meanwhile (bench/fork_cost.py: a session, as a worker writes it)
        stays."""
        stop_process(self.worker)
        self.worker = self._spawn_worker(**worker_env)
        time.sleep(patience(1.0))  # let it start, subscribe and poll once

    def _spawn_worker(self, **worker_env: str) -> subprocess.Popen[bytes]:
        # The worker serves its probes and metrics (its event loop's lag: `loop_lags`) on a port of its own.
        self.worker_port = free_port()
        worker = ("worker", "--port", str(self.worker_port))
        return self._spawn(self.worker_tree or ROOT, *worker, **worker_env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        processes = (self.gateway, self.worker, self.redis.process)
        return [process.pid for process in processes if process is not None]

    def stop(self) -> None:
        for process in (self.gateway, self.worker):
            stop_process(process)

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
                # `name: value`, or `name:value` (one space after the colon is dropped, as the SSE spec says)
                fields = {
                    name: value.removeprefix(b" ")
                    for name, _, value in (line.partition(b":") for line in raw.split(b"\n"))
                    if name
                }
                # Without `id:` (Durable Streams has none), the id is -1; without `event:` (the AI SDK's
                # UI message stream), the type is `message`, as the SSE spec says; a comment is no event.
                if b"event" in fields or b"data" in fields:
                    event = fields.get(b"event", b"message")
                    frame = Frame(int(fields.get(b"id", -1)), event, fields.get(b"data", b""), now)
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


LOOP_LAG = "tokentail_event_loop_lag_seconds_bucket"  # shared/plumbing/loop_lag.py


async def loop_lag_buckets(client: httpx2.AsyncClient, url: str) -> dict[float, float]:
    """A tokentail process's loop-lag histogram, as scraped from its `/metrics`: each bucket's upper
    bound (s) -> how many ticks were at most that late; {} where it serves none (another revision)."""
    try:
        text = (await client.get(url)).text
    except httpx2.HTTPError:
        return {}
    buckets = {}
    for line in text.splitlines():
        if line.startswith(LOOP_LAG):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def worst_lag(before: dict[float, float], after: dict[float, float]) -> float:
    """The worst lateness of the ticks between two scrapes, as its bucket's upper bound (s): the
    smallest bound all of them were at most (inf: past the last; 0.0: no tick, or no histogram)."""
    if not after:
        return 0.0
    moved = {bound: count - before.get(bound, 0.0) for bound, count in after.items()}
    total = moved.get(float("inf"), 0.0)
    if total <= 0:
        return 0.0
    return min(bound for bound, count in moved.items() if count >= total)
