"""Side by side: tokentail, the naive gateway, Vercel's resumable-stream and the Durable Streams
reference server, in one run.

Each system is a gateway process and a producer process (tokentail: `tokentail gateway` and
`tokentail worker` with the offline scripted model; naive: bench/peers/naive.py; Vercel:
bench/peers/vercel/server.mjs; Durable Streams: bench/peers/durable-streams/server.mjs, its server
file-backed and without Redis) on a private redis-server, driven by the same load generator (raw
asyncio sockets, harness.read_sse) with the same workload: runs of 300 tokens at 50 tokens/s, tokens
due every 50 ms joined into one event. Every level is repeated and reported as min/median/max.
"""

import asyncio
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx2
from redis.asyncio import Redis

from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.redis_server import RedisServer, free_port
from tokentail.shared.events import RunCompleted
from tokentail.shared.keys import Keys
from tokentail.shared.records import RunRecord, SessionRecord
from tokentail.shared.settings import Settings
from tokentail.worker.run_writes import RunWrites

PEERS = Path(__file__).resolve().parent / "peers"
TOKENS, RATE = 300, 50


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def connections_of(pid: int, port: int) -> int:
    """TCP connections process `pid` holds to the Redis on `port`."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{port} )"], capture_output=True, text=True
    ).stdout
    return sum(1 for line in out.splitlines() if f"pid={pid}," in line)


async def redis_clients(server: RedisServer) -> int:
    """`connected_clients` of INFO clients: every process's connections, less the one asking."""
    redis = Redis.from_url(server.url)
    try:
        return int((await redis.info("clients"))["connected_clients"]) - 1
    finally:
        await redis.aclose()


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


class System:
    """A gateway and a producer on a private Redis. Subclasses say how to start a stream and read it."""

    name = ""
    delta = b"message.delta"  # the SSE event type of a token event
    uses_redis = True  # False: no Redis figures (its private Redis runs idle, its CPU not counted)

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.port = free_port()
        self.producer_port = free_port()
        self.gateway: subprocess.Popen[bytes] | None = None
        self.producer: subprocess.Popen[bytes] | None = None
        self.base_clients = 0  # Redis clients right after a (re)start, before any stream

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        raise NotImplementedError

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """The system's processes by role: gateway, producer and (if it uses it) redis."""
        processes = {"gateway": self.gateway, "producer": self.producer}
        if self.uses_redis:
            processes["redis"] = self.redis.process
        return {role: process for role, process in processes.items() if process is not None}

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes.values()]

    async def restart(self) -> None:
        """Fresh processes, and the Redis clients they hold before any stream is started."""
        self.stop()
        self.start()
        await asyncio.sleep(harness.patience(0.5))  # clients that connect at startup have
        self.base_clients = await redis_clients(self.redis)

    def stop(self) -> None:
        for process in (self.gateway, self.producer):
            harness.stop_process(process)

    def _wait_for(self, port: int) -> None:
        deadline = time.monotonic() + harness.patience(20)
        while time.monotonic() < deadline:
            try:
                with __import__("socket").create_connection(("127.0.0.1", port), timeout=harness.patience(1)):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name}: nothing listens on {port}")

    async def start_stream(self, client: httpx2.AsyncClient, tokens: int = TOKENS, rate: float = RATE) -> str:
        """Start one run; the path its SSE stream is read at."""
        raise NotImplementedError

    def stream_path(self, stream_id: str) -> str:
        """Where the gateway serves a peer's stream as SSE."""
        return f"/stream/{stream_id}"

    def payload(self, frame: harness.Frame) -> dict[str, Any]:
        """A token event's data: the producer's clock `t` (ms) and the tokens `text`."""
        payload: dict[str, Any] = json.loads(frame.data)
        return payload

    async def delays_ms(self, path: str, frames: list[harness.Frame]) -> list[float]:
        """Append -> receipt delay of each token event of a stream read whole."""
        return [frame.received * 1000 - self.payload(frame)["t"] for frame in frames if frame.event == self.delta]

    def finished(self, frames: list[harness.Frame]) -> bool:
        return bool(frames) and frames[-1].event == b"done"

    async def backlog(self, client: httpx2.AsyncClient, events: int) -> str:
        """A stream holding `events` token events, still open: the path a client resumes it at."""
        stream_id = uuid.uuid4().hex
        url = f"http://127.0.0.1:{self.producer_port}/start"
        params: dict[str, str | int] = {"id": stream_id, "tokens": events, "rate": 0, "burst": 1}
        (await client.post(url, params=params)).raise_for_status()
        return self.stream_path(stream_id)


class Tokentail(System):
    name = "tokentail"

    def start(self) -> None:
        self.stack = harness.Stack.__new__(harness.Stack)  # its process handling, on this Redis and port
        self.stack.redis, self.stack.port = self.redis, self.port
        self.stack.env = {
            **os.environ,
            "TOKENTAIL_REDIS_URL": self.redis.url,
            "TOKENTAIL_LOG_LEVEL": "warning",
            "TOKENTAIL_RUNS_PER_MINUTE": "0",
            "TOKENTAIL_MAX_STREAMS_PER_TENANT": "0",
            # The idle streams' runs are silent for as long as the phase lasts, which on a slow box
            # passed the default 60 s: runs must not fail for it (thousands failing at once, and a
            # worker slow to stop, ended a run of the benchmark).
            "TOKENTAIL_IDLE_TIMEOUT_SECONDS": "3600",
        }
        self.stack.gateway = self.stack.worker = None
        self.stack.start(TOKENTAIL_WORKER_CONCURRENCY="5000")
        self.gateway, self.producer = self.stack.gateway, self.stack.worker
        self.keys = Keys(self.stack.prefix)

    async def start_stream(self, client: httpx2.AsyncClient, tokens: int = TOKENS, rate: float = RATE) -> str:
        created = await harness.create(client, tokens=tokens, tokens_per_second=rate)
        return f"/v1/sessions/{created['session_id']}/events"

    async def delays_ms(self, path: str, frames: list[harness.Frame]) -> list[float]:
        redis = Redis.from_url(self.redis.url)
        try:
            entries = await redis.xrange(self.keys.session(path.split("/")[3]).events)
        finally:
            await redis.aclose()
        appended = {int(entry_id.split(b"-")[0]): int(fields[b"ts"]) / 1000 for entry_id, fields in entries}
        return [frame.received * 1000 - appended[frame.id] for frame in frames if frame.event == b"message.delta"]

    def finished(self, frames: list[harness.Frame]) -> bool:
        return bool(frames) and frames[-1].event == b"run.completed"

    async def backlog(self, client: httpx2.AsyncClient, events: int) -> str:
        # Appended through the product's own store (the worker coalesces tokens, so a run of 10,000
        # tokens would not make 10,000 events), under a lease of our own; then the run completes.
        assert self.producer is not None
        settings = Settings(redis_url=self.redis.url, key_prefix=self.stack.prefix)
        redis = Redis.from_url(self.redis.url)
        self.producer.send_signal(signal.SIGSTOP)  # the worker must not take this run: it is ours
        gateway, runs = SessionWrites(redis, settings), RunWrites(redis, settings)
        session = SessionRecord(session_id=new_session_id(), tenant="public", created_at=time.time())
        run = RunRecord(run_id=new_run_id(), input="benchmark", queued_at=time.time(), model="scripted")
        await gateway.queue_run(session.session_id, run, create=session)
        started = await runs.start_run(session.session_id, run.run_id, run.run_id)
        assert started is not None
        lease = started.lease
        delta = json.dumps({"run_id": run.run_id, "text": "token "})
        for _ in range(events // 100):
            await lease.append([("message.delta", delta)] * 100)
        ending = RunCompleted(run_id=run.run_id, output="token " * events, usage={})
        await lease.append([], ending=ending)
        await redis.aclose()
        self.producer.send_signal(signal.SIGCONT)
        return f"/v1/sessions/{session.session_id}/events"


class TokentailGateway(Tokentail):
    """tokentail's gateway fed by bench/light_producer.py instead of a worker: the gateway's own
    capacity, on a box where the worker would run out of CPU first."""

    name = "tokentail-gateway"

    def start(self) -> None:
        super().start()
        assert self.producer is not None
        harness.stop_process(self.producer)
        env = {**self.stack.env, "TOKENTAIL_KEY_PREFIX": self.stack.prefix}
        script = str(Path(__file__).resolve().parent / "light_producer.py")
        self.producer = subprocess.Popen([sys.executable, script, str(self.producer_port)], env=env)
        self._wait_for(self.producer_port)

    async def start_stream(self, client: httpx2.AsyncClient, tokens: int = TOKENS, rate: float = RATE) -> str:
        url = f"http://127.0.0.1:{self.producer_port}/start"
        response = await client.post(url, params={"tokens": tokens, "rate": rate})
        response.raise_for_status()
        return f"/v1/sessions/{response.json()['session_id']}/events"


class Naive(System):
    name = "naive"

    def start(self) -> None:
        env = {**os.environ, "REDIS_URL": self.redis.url}
        script = str(PEERS / "naive.py")
        self.gateway = subprocess.Popen([sys.executable, script, "gateway", str(self.port)], env=env)
        self.producer = subprocess.Popen([sys.executable, script, "producer", str(self.producer_port)], env=env)
        self._wait_for(self.port)
        self._wait_for(self.producer_port)

    async def start_stream(self, client: httpx2.AsyncClient, tokens: int = TOKENS, rate: float = RATE) -> str:
        stream_id = uuid.uuid4().hex
        url = f"http://127.0.0.1:{self.producer_port}/start"
        (await client.post(url, params={"id": stream_id, "tokens": tokens, "rate": rate})).raise_for_status()
        return self.stream_path(stream_id)


class NodePeer(System):
    """A peer in Node: bench/peers/<folder>/server.mjs, as `gateway` and as `producer`, its packages
    installed from its lockfile on first use."""

    folder = ""

    def env(self) -> dict[str, str]:
        return {}

    def start(self) -> None:
        folder = PEERS / self.folder
        if not (folder / "node_modules").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, check=True)
        env = {**os.environ, **self.env()}
        self.gateway = subprocess.Popen(["node", "server.mjs", "gateway", str(self.port)], cwd=folder, env=env)
        self.producer = subprocess.Popen(
            ["node", "server.mjs", "producer", str(self.producer_port)], cwd=folder, env=env
        )
        self._wait_for(self.port)
        self._wait_for(self.producer_port)

    start_stream = Naive.start_stream


class Vercel(NodePeer):
    name = "vercel-rs"
    folder = "vercel"

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis.url}


class DurableStreams(NodePeer):
    """The Durable Streams reference server, file-backed (LMDB and append-only logs in this system's
    data folder), and a producer appending over HTTP with idempotent-producer headers. No Redis."""

    name = "durable-streams"
    folder = "durable-streams"
    delta = b"data"
    uses_redis = False

    def env(self) -> dict[str, str]:
        return {"DATA_DIR": str(self.redis.data_dir / "streams"), "GATEWAY_URL": self.url}

    def stream_path(self, stream_id: str) -> str:
        return f"/v1/stream/{stream_id}?offset=-1&live=sse"  # from the start, followed live

    def payload(self, frame: harness.Frame) -> dict[str, Any]:
        # A JSON stream's `data` event is an array of messages: here one, the object one append wrote.
        payload: dict[str, Any] = json.loads(frame.data)[0]
        return payload

    def finished(self, frames: list[harness.Frame]) -> bool:
        # The writer closed the stream: the server's last event says so, then it ends the response.
        return (
            bool(frames) and frames[-1].event == b"control" and json.loads(frames[-1].data).get("streamClosed") is True
        )


@dataclass
class Run:
    """One repetition of one level. CPU and deliveries are counted over the steady part of the run
    (after every stream started, before any ended), so starting streams is left out for all systems
    alike (tokentail's gateway creates sessions; the peers' producers start their streams)."""

    streams: int
    delays_ms: list[float] = field(default_factory=list)
    appended: list[float] = field(default_factory=list)  # when each token event was appended (s after the level began)
    incomplete: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process over the window
    seconds: float = 0.0  # the window
    events: int = 0  # token events delivered in the window
    tokens: int = 0  # tokens delivered in the window
    gateway_connections: int = 0  # the gateway's own, counted by `ss` (systems with Redis)
    redis_clients: int = 0  # every process's (INFO clients), while all streams are open (systems with Redis)

    @property
    def p99(self) -> float:
        return harness.percentile(self.delays_ms, 99) if self.delays_ms else float("inf")

    def phase_p99(self) -> dict[str, float]:
        """The p99 of the events appended while streams were starting (the first 1.5 s), in the steady
        part, and after it (while streams end): what limits a level, starts, streaming or ends."""
        ends = {"starting": 1.5, "steady": 1.5 + self.seconds, "ending": float("inf")}
        phases: dict[str, list[float]] = {name: [] for name in ends}
        for at, delay in zip(self.appended, self.delays_ms, strict=True):
            phases[next(name for name, end in ends.items() if at < end)].append(delay)
        return {name: harness.percentile(delays, 99) if delays else float("nan") for name, delays in phases.items()}


async def run_level(system: System, streams: int, tokens: int) -> Run:
    """`streams` runs at 50 tokens/s started over one second, each read by one SSE client."""
    pids = {role: process.pid for role, process in system.processes.items()}
    run = Run(streams)
    began = time.time()
    window: list[float] = []
    readings: list[dict[str, float]] = []

    def reading() -> dict[str, float]:
        return {name: harness.cpu_seconds(pid) for name, pid in pids.items()} | {
            "load": time.process_time(),
            "box": harness.box_cpu_seconds(),
        }

    async def steady_window() -> None:
        await asyncio.sleep(1.5)  # every stream has started
        window.append(time.time())
        readings.append(reading())
        if system.uses_redis:
            run.gateway_connections = connections_of(pids["gateway"], system.redis.port)
            run.redis_clients = await redis_clients(system.redis)
        await asyncio.sleep(max(0.5, tokens / RATE - 2.0))  # before the first stream ends
        window.append(time.time())
        readings.append(reading())

    all_frames: list[list[harness.Frame]] = []
    limits = httpx2.Limits(max_connections=50)
    async with httpx2.AsyncClient(base_url=system.url, limits=limits, timeout=harness.patience(30)) as client:

        async def one(delay: float) -> None:
            await asyncio.sleep(delay)
            path = await system.start_stream(client, tokens=tokens)
            try:  # a stream that never ends (its producer failed) fails the level, not the benchmark
                frames = await asyncio.wait_for(
                    harness.read_sse(system.port, path), tokens / RATE + harness.patience(60)
                )
            except TimeoutError:
                run.incomplete += 1
                return
            run.incomplete += not system.finished(frames)
            delays = await system.delays_ms(path, frames)  # one per token event, in order
            received = [frame.received for frame in frames if frame.event == system.delta]
            run.appended += [at - delay / 1000 - began for at, delay in zip(received, delays, strict=True)]
            run.delays_ms += delays
            all_frames.append(frames)

        await asyncio.gather(steady_window(), *(one(i / streams) for i in range(streams)))
    run.seconds = window[1] - window[0]
    run.cpu = {name: readings[1][name] - readings[0][name] for name in readings[0]}
    # What the rest of the machine used meanwhile (other programs, kernel threads): on a shared box,
    # the way to tell a disturbed repeat from a slow system.
    run.cpu["other"] = run.cpu.pop("box") - sum(run.cpu.values())
    for frames in all_frames:
        for frame in frames:
            if frame.event == system.delta and window[0] <= frame.received < window[1]:
                run.events += 1
                run.tokens += len(system.payload(frame)["text"].split())
    return run


async def idle_streams(system: System, count: int) -> dict[str, float]:
    """`count` open SSE streams with nothing to send: gateway memory and Redis connections each."""
    assert system.gateway is not None
    limits = httpx2.Limits(max_connections=50)
    async with httpx2.AsyncClient(base_url=system.url, limits=limits, timeout=harness.patience(60)) as client:
        # Runs that will not produce for the whole measurement, however slow the box: one token, then
        # a pause of 1,000 s.
        paths = [await system.start_stream(client, tokens=2, rate=0.001) for _ in range(count)]
    await asyncio.sleep(1)
    rss_before = rss_kb(system.gateway.pid)
    if system.uses_redis:
        connections_before = connections_of(system.gateway.pid, system.redis.port)
        clients_before = await redis_clients(system.redis)
    sockets = []
    for start in range(0, count, 100):  # opened as a crowd would arrive, not all in one instant
        for path in paths[start : start + 100]:
            reader, writer = await asyncio.open_connection("127.0.0.1", system.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode())
            sockets.append((reader, writer))
        await asyncio.sleep(0.05)
    await asyncio.gather(*(reader.readuntil(b"\r\n\r\n") for reader, _ in sockets))
    await asyncio.sleep(harness.patience(3))
    figures: dict[str, float] = {"streams": count, "kb_per_stream": (rss_kb(system.gateway.pid) - rss_before) / count}
    if system.uses_redis:
        figures |= {
            "gateway_redis_connections": connections_of(system.gateway.pid, system.redis.port),
            "connections_before": connections_before,
            # Every process's Redis clients (INFO), and how many opening the streams added.
            "redis_clients": (clients := await redis_clients(system.redis)),
            "redis_clients_added": clients - clients_before,
        }
    for _, writer in sockets:
        writer.close()
    await asyncio.sleep(1)
    return figures


async def fan_out(system: System, watchers: int) -> dict[str, Any]:
    """One stream watched by `watchers` clients: Redis commands per delivered event, by kind (systems
    with Redis), and how many watchers read it to its end."""
    redis = Redis.from_url(system.redis.url)
    reads = ("xread", "xrange", "xrevrange", "publish", "spublish") if system.uses_redis else ()

    async def calls() -> dict[str, int]:
        stats = await redis.info("commandstats") if reads else {}
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in reads}

    async with httpx2.AsyncClient(base_url=system.url, timeout=harness.patience(30)) as client:
        path = await system.start_stream(client, tokens=100, rate=50)
        # Everyone connects first (the early part comes as one catch-up), then counting starts.
        readers = [asyncio.create_task(harness.read_sse(system.port, path)) for _ in range(watchers)]
        await asyncio.sleep(0.5)
        before, counting_from = await calls(), time.time()
        results = await asyncio.gather(*readers)
        after = await calls()
    await redis.aclose()
    counted = sum(1 for f in results[0] if f.event == system.delta and f.received > counting_from)
    figures: dict[str, Any] = {"events": counted, "complete_watchers": sum(map(system.finished, results))}
    if system.uses_redis:
        figures["per_event"] = {
            name: (after[name] - before[name]) / max(1, counted) for name in reads if after[name] != before[name]
        }
    return figures


async def first_event_ms(system: System, runs: int) -> dict[str, float]:
    """Start a run (before the request) -> its first token event read by a fresh SSE client."""
    times: list[float] = []
    async with httpx2.AsyncClient(base_url=system.url, timeout=harness.patience(30)) as client:
        for _ in range(runs):
            await asyncio.sleep(0.05)
            begun = time.time()
            path = await system.start_stream(client, tokens=10, rate=50)  # Vercel's cannot be followed once done
            frames = await harness.read_sse(system.port, path, lambda f: f.event == system.delta)
            times.append((frames[-1].received - begun) * 1000)
    return {"p50_ms": harness.percentile(times, 50), "p99_ms": harness.percentile(times, 99)}


async def resume_backlog(system: System, events: int, repeats: int) -> dict[str, float]:
    """A client resuming from the start of a stream `events` long: first and last event received."""
    delta = b"\nevent: %s\n" % system.delta
    async with httpx2.AsyncClient(base_url=system.url, timeout=harness.patience(120)) as client:
        path = await system.backlog(client, events)
        await asyncio.sleep(1)
    firsts, lasts = [], []
    for _ in range(repeats):
        reader, writer = await asyncio.open_connection("127.0.0.1", system.port)
        begun = time.perf_counter()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        first, seen, tail = None, 0, b""
        while seen < events:
            data = await reader.read(1 << 18)
            if not data:
                break
            # Only the new bytes are searched (with the tail a frame may straddle): re-counting the
            # whole stream on every read would add the load generator's time to the last byte.
            chunk = tail + data
            seen += chunk.count(delta)
            tail = chunk[-len(delta) + 1 :]
            if seen and first is None:
                first = time.perf_counter() - begun
        lasts.append((time.perf_counter() - begun) * 1000)
        firsts.append((first or 0) * 1000)
        writer.close()
    return {"first_byte_ms": statistics.median(firsts), "last_byte_ms": statistics.median(lasts)}


SYSTEMS: dict[str, Callable[[RedisServer], System]] = {
    system.name: system for system in (Tokentail, Naive, Vercel, DurableStreams, TokentailGateway)
}


async def compare(
    data_dir: str, quick: bool, repeats: int, levels: list[int], systems: list[str], max_other: float
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in systems:
        folder = Path(data_dir) / name
        folder.mkdir()
        with RedisServer(folder) as redis:
            system = SYSTEMS[name](redis)
            began = time.monotonic()
            try:
                await system.restart()
                results[system.name] = await measure(system, quick, repeats, levels, max_other)
            finally:
                system.stop()
            print(f"  ({name}: {time.monotonic() - began:.0f} s)")
    return results


async def measure(system: System, quick: bool, repeats: int, levels: list[int], max_other: float) -> dict[str, Any]:
    name = system.name
    figures: dict[str, Any] = {"levels": []}
    print(f"== {name}")
    if isinstance(system, TokentailGateway):  # what the worker would limit: streams held
        await capacity(system, figures, quick, repeats, levels, max_other)
        return figures
    # First, on a fresh gateway process: a heap grown by the loads below would hide what streams cost.
    meter = harness.OtherWork(system.pids)
    idle = figures["idle"] = await idle_streams(system, 500 if quick else 5000)
    idle["other_cpu_share"] = meter.share()
    redis = (
        f" {idle['gateway_redis_connections']} gateway Redis connections,"
        f" {idle['redis_clients']} Redis clients in all ({idle['redis_clients_added']:+} on opening them)"
        if system.uses_redis
        else " no Redis"
    )
    print(
        f"  {idle['streams']} idle streams: {idle['kb_per_stream']:.1f} KB each,{redis}"
        f"  (other CPU {idle['other_cpu_share']:.0%})"
    )
    await system.restart()  # and with it the idle runs, which would otherwise go on in the producer
    meter = harness.OtherWork(system.pids)
    first = figures["first_event"] = await first_event_ms(system, 20 if quick else 100)
    first["other_cpu_share"] = meter.share()
    print(
        f"  start a run -> first token at a new client: p50 {first['p50_ms']:.1f} ms, p99 {first['p99_ms']:.1f} ms"
        f"  (other CPU {first['other_cpu_share']:.0%})"
    )
    backlog, meter = 1000 if quick else 10_000, harness.OtherWork(system.pids)
    resume = figures["resume"] = await resume_backlog(system, backlog, 3 if quick else 10)
    resume["other_cpu_share"] = meter.share()
    print(
        f"  resume of {backlog} events: first {resume['first_byte_ms']:.1f} ms, last {resume['last_byte_ms']:.1f} ms"
        f"  (other CPU {resume['other_cpu_share']:.0%})"
    )
    figures["fan_out"] = await fan_out(system, 20 if quick else 100)
    per_event = " (per_event: Redis commands per event)" if system.uses_redis else ""
    print(f"  one stream, {20 if quick else 100} watchers{per_event}: {figures['fan_out']}")
    await capacity(system, figures, quick, repeats, levels, max_other)
    return figures


async def capacity(
    system: System, figures: dict[str, Any], quick: bool, repeats: int, levels: list[int], max_other: float
) -> None:
    """Concurrent streams at 50 tokens/s, level by level, until the median p99 passes 100 ms.

    A run during which the rest of the machine used more than `max_other` of a core is run again
    (at most twice the repeats, then kept as it is), and counted: on a shared box, it says little
    about the system measured."""
    tokens = 150 if quick else TOKENS
    for streams in levels:
        runs: list[Run] = []
        discarded = 0
        while len(runs) < repeats:
            run = await run_level(system, streams, tokens)
            other = run.cpu["other"] / run.seconds
            if other > max_other and discarded < 2 * repeats:
                discarded += 1
                print(f"  {streams:5} streams: other work took {other:.0%} of a core meanwhile; run again")
                continue
            runs.append(run)
        p99s = [run.p99 for run in runs]
        level: dict[str, Any] = {
            "streams": streams,
            "p99_ms": summary(p99s),
            "p50_ms": summary(
                [harness.percentile(run.delays_ms, 50) if run.delays_ms else float("inf") for run in runs]
            ),
            "p99_ms_by_phase": {
                phase: statistics.median(run.phase_p99()[phase] for run in runs)
                for phase in ("starting", "steady", "ending")
            },
            "incomplete": sum(run.incomplete for run in runs),
            "gateway_us_per_event": summary([1e6 * run.cpu["gateway"] / max(1, run.events) for run in runs]),
            "gateway_s_per_1k_tokens": summary([1000 * run.cpu["gateway"] / max(1, run.tokens) for run in runs]),
            "system_s_per_1k_tokens": summary(
                [1000 * sum(run.cpu[k] for k in system.processes) / max(1, run.tokens) for run in runs]
            ),
            "cpu_share": {k: statistics.median(run.cpu[k] / run.seconds for run in runs) for k in runs[0].cpu},
            "events_per_s": statistics.median(run.events / run.seconds for run in runs),
            "other_cpu_share_max": max(run.cpu["other"] / run.seconds for run in runs),  # the worst repeat
            "disturbed_runs_discarded": discarded,
        }
        redis = "no Redis"
        if system.uses_redis:
            level["gateway_redis_connections_per_stream"] = statistics.median(
                run.gateway_connections / streams for run in runs
            )
            level["redis_clients_per_stream"] = statistics.median(
                (run.redis_clients - system.base_clients) / streams for run in runs
            )
            redis = (
                f"Redis conns/stream: gateway {level['gateway_redis_connections_per_stream']:.2f},"
                f" all (INFO) {level['redis_clients_per_stream']:.2f}"
            )
        figures["levels"].append(level)
        p99, cpu = level["p99_ms"], " ".join(f"{k} {v:4.0%}" for k, v in level["cpu_share"].items())
        print(
            f"  {streams:5} streams: p99 {p99['min']:7.1f} / {p99['median']:7.1f} / {p99['max']:7.1f} ms"
            f" (min/median/max)  gateway {level['gateway_us_per_event']['median']:6.1f} µs/event"
            f"  system {level['system_s_per_1k_tokens']['median']:.3f} s/1k tokens  CPU {cpu}"
            f"  {redis}  failed {level['incomplete']}"
            f"  (p99 by phase, median: {' / '.join(f'{v:.1f}' for v in level['p99_ms_by_phase'].values())} ms"
            " starting / steady / ending)"
            f"  (other CPU, worst repeat {level['other_cpu_share_max']:.0%}; {discarded} disturbed run(s) discarded)"
        )
        if level["p99_ms"]["median"] > 100 or level["incomplete"]:
            break
    held = [lv["streams"] for lv in figures["levels"] if lv["p99_ms"]["median"] <= 100 and not lv["incomplete"]]
    figures["streams_held"] = max(held, default=0)
    print(f"  held with median p99 <= 100 ms: {figures['streams_held']} streams")


def table(results: dict[str, Any], level: int) -> list[tuple[str, ...]]:
    """The headline figures, one row each: tokentail, each peer, and how many times better tokentail is."""

    def at(name: str) -> dict[str, Any]:
        levels = results[name]["levels"]
        return next((lv for lv in levels if lv["streams"] == level), levels[0])

    rows: list[tuple[str, Callable[[str], float], bool]] = [  # label, figure, higher is better
        ("streams held, p99 <= 100 ms (median of repeats)", lambda n: results[n]["streams_held"], True),
        (
            f"gateway CPU per delivered event, µs ({level} streams)",
            lambda n: at(n)["gateway_us_per_event"]["median"],
            False,
        ),
        (
            f"gateway CPU per 1k tokens, s ({level} streams)",
            lambda n: at(n)["gateway_s_per_1k_tokens"]["median"],
            False,
        ),
        (
            f"whole system CPU per 1k tokens, s ({level} streams)",
            lambda n: at(n)["system_s_per_1k_tokens"]["median"],
            False,
        ),
        (
            f"gateway Redis connections per open stream ({level} streams)",
            lambda n: at(n)["gateway_redis_connections_per_stream"],
            False,
        ),
        (
            f"Redis clients per open stream, all processes, INFO delta ({level} streams)",
            lambda n: at(n)["redis_clients_per_stream"],
            False,
        ),
        (
            "gateway Redis connections, idle streams open",
            lambda n: results[n]["idle"]["gateway_redis_connections"],
            False,
        ),
        (
            "Redis clients, all processes, idle streams open (INFO)",
            lambda n: results[n]["idle"]["redis_clients"],
            False,
        ),
        ("gateway memory per idle open stream, KB", lambda n: results[n]["idle"]["kb_per_stream"], False),
        (
            "one stream, many watchers: Redis reads and deliveries per event",
            lambda n: sum(results[n]["fan_out"]["per_event"].values()),
            False,
        ),
        ("resume of the backlog: first event, ms", lambda n: results[n]["resume"]["first_byte_ms"], False),
        ("resume of the backlog: last event, ms", lambda n: results[n]["resume"]["last_byte_ms"], False),
        ("start -> first token at the client, p50 ms", lambda n: results[n]["first_event"]["p50_ms"], False),
        ("start -> first token at the client, p99 ms", lambda n: results[n]["first_event"]["p99_ms"], False),
    ]
    names = list(results)
    peers = [n for n in names if not n.startswith("tokentail")] if "tokentail" in names else []
    out = [("figure", *names, *(f"tokentail vs {p}" for p in peers))]

    def value(figure: Callable[[str], float], name: str) -> float:
        try:
            return figure(name)
        except (KeyError, IndexError):  # not measured for this system (tokentail-gateway: capacity only;
            return math.nan  # Durable Streams: no Redis)

    for label, figure, higher in rows:
        values = {n: value(figure, n) for n in names}
        ratios = []
        for peer in peers:
            ours, theirs = values["tokentail"], values[peer]
            better = (ours / theirs if theirs else math.inf) if higher else (theirs / ours if ours else math.inf)
            ratios.append("n/a" if math.isnan(better) else f"{better:.2f}x")
        cells = ("n/a" if math.isnan(v) else f"{v:.0f}" if v >= 100 else f"{v:.3g}" for v in values.values())
        out.append((label, *cells, *ratios))
    return out
