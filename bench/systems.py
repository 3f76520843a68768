"""The systems of the side-by-side benchmark: tokentail, the naive gateway, Vercel's resumable-stream
and the Durable Streams reference server, each a gateway process and a producer process on a
private redis-server, and how the load generator starts a stream on each and reads it.

tokentail: `tokentail gateway` and `tokentail worker` with the offline scripted model; naive:
bench/peers/naive.py; Vercel: bench/peers/vercel/server.mjs, and the AI SDK's resumable chat
pipeline over it, bench/peers/vercel/ai-sdk.mjs (streams held only); Durable Streams:
bench/peers/durable-streams/server.mjs, its server file-backed and without Redis.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import httpx2
from redis.asyncio import Redis

from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.redis_server import RedisServer, free_port
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.vocabulary.events import MessageDelta, RunCompleted
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord
from tokentail.worker.writes.run_writes import RunWrites

PEERS = Path(__file__).resolve().parent / "peers"
TOKENS, RATE = 300, 50
# What a delivery delay is timed from (bench.py --clock): `due`, each token's due time, which every
# producer writes as the token itself, so the producer -> Redis leg counts for every system alike;
# or `append`, when the event was appended (tokentail: Redis TIME in the append script; the peers:
# their producer's clock as it built the frame), the figure before issue 53.
CLOCK = "due"


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


class System:
    """A gateway and a producer on a private Redis. Subclasses say how to start a stream and read it."""

    name = ""
    delta = b"message.delta"  # the SSE event type of a token event
    uses_redis = True  # False: no Redis figures (its private Redis runs idle, its CPU not counted)
    # How a client that dropped resumes (bench/storm.py): "last-event-id" (the header), "offset" (the
    # characters it had read, `?skip=`: Vercel's package), or None (not measured).
    resume_by: str | None = "last-event-id"
    # The run a start is measured with (bench/starts.py): tokens and tokens/s. Two tokens 100 ms
    # apart: a stream that ended before its client's GET cannot be followed in Vercel's package.
    short_run: tuple[int, float] = (2, 10)

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

    def metrics_urls(self) -> dict[str, str]:
        """Where each of its processes that measures its event loop's lag serves its metrics, by role
        (tokentail's: shared/plumbing/loop_lag.py); none for the peers."""
        return {}

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """The system's processes by role: gateway, producer and (if it uses it) redis."""
        processes = {"gateway": self.gateway, "producer": self.producer}
        if self.uses_redis:
            processes["redis"] = self.redis.process
        return {role: process for role, process in processes.items() if process is not None}

    @property
    def role_pids(self) -> dict[str, list[int]]:
        """The pids whose CPU counts as each role's: a process each, but a Redis of several servers
        counts them all as `redis` (bench/cluster.py: a cluster's nodes and the queue's)."""
        return {role: [process.pid] for role, process in self.processes.items()}

    def cpu_seconds(self) -> dict[str, float]:
        """The CPU each role has used so far (/proc: utime + stime), its processes' summed."""
        return {role: sum(map(harness.cpu_seconds, pids)) for role, pids in self.role_pids.items()}

    @property
    def pids(self) -> list[int]:
        return [pid for pids in self.role_pids.values() for pid in pids]

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

    # The only systems of which the levels are measured (streams held, the curve, CPU per token): a
    # system that stands in for another's part (tokentail-gateway) or a product pipeline (vercel-ai).
    capacity_only = False

    def is_token(self, frame: harness.Frame) -> bool:
        """Whether `frame` is a token event."""
        return frame.event == self.delta

    def payload(self, frame: harness.Frame) -> dict[str, Any]:
        """A token event's data: its tokens `text` (each the time it was due, ms since the epoch:
        every system's producer stamps them so) and, for the peers, the producer's clock `t` (ms)
        when it built the frame."""
        payload: dict[str, Any] = json.loads(frame.data)
        return payload

    def due_ms(self, frame: harness.Frame) -> float:
        """When the last token of a token event was due: the model spoke it then."""
        return float(self.payload(frame)["text"].split()[-1])

    async def delays_ms(self, path: str, frames: list[harness.Frame]) -> list[float]:
        """Delivery delay of each token event of a stream read whole, on the benchmark's clock
        (`CLOCK`): from its last token's due time (`due`: every hop counts, the producer's too), or
        from when it was appended (`append`: the producer's clock as it built the frame)."""
        tokens = [frame for frame in frames if self.is_token(frame)]
        if CLOCK == "due":
            return [frame.received * 1000 - self.due_ms(frame) for frame in tokens]
        return [frame.received * 1000 - self.payload(frame)["t"] for frame in tokens]

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
    # The scripted model answers a whole sentence at least (about 16 tokens): at once, so that the
    # writer joins it into one or two events, as the peers' two tokens.
    short_run = (2, 0)
    tree: Path | None = None  # another revision's package (bench/baseline.py), gateway and worker; else this one
    due_stamps: bool | None = None  # its scripted model stamps each token's due time (None: this tree's does)
    extra_env: dict[str, str] = {}  # for both processes, last (bench/trace_cost.py: OTEL_*, tracing on)

    def start(self) -> None:
        self.stack = harness.Stack.__new__(harness.Stack)  # its process handling, on this Redis and port
        self.stack.redis, self.stack.port = self.redis, self.port
        self.stack.gateway_tree = self.stack.worker_tree = self.tree
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
            **self.extra_env,
        }
        self.stack.gateway = self.stack.worker = None
        self.stack.start(TOKENTAIL_WORKER_CONCURRENCY="5000")
        self.gateway, self.producer = self.stack.gateway, self.stack.worker
        self.keys = Keys(self.stack.prefix)

    def metrics_urls(self) -> dict[str, str]:
        urls = {"gateway": f"{self.url}/metrics"}
        if self.producer is self.stack.worker:  # (not the light producer of tokentail-gateway)
            urls["producer"] = f"http://127.0.0.1:{self.stack.worker_port}/metrics"
        return urls

    async def start_stream(self, client: httpx2.AsyncClient, tokens: int = TOKENS, rate: float = RATE) -> str:
        # Another revision's scripted model may not know `due_stamps` (bench.py measures only its CPU).
        stamps = {"due_stamps": True} if (self.tree is None if self.due_stamps is None else self.due_stamps) else {}
        created = await harness.create(client, tokens=tokens, tokens_per_second=rate, **stamps)
        return f"/v1/sessions/{created['session_id']}/events"

    async def delays_ms(self, path: str, frames: list[harness.Frame]) -> list[float]:
        if CLOCK == "due":
            return await super().delays_ms(path, frames)
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
        delta = MessageDelta(run_id=run.run_id, text="token ").model_dump_json()  # compact, as a worker writes it
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
    short_run = System.short_run  # the light producer paces every stream
    capacity_only = True  # what the worker would limit: streams held

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
    """A peer in Node: bench/peers/<folder>/<script>, as `gateway` and as `producer`, its packages
    installed from its lockfile on first use."""

    folder = ""
    script = "server.mjs"

    def env(self) -> dict[str, str]:
        return {}

    def start(self) -> None:
        folder = PEERS / self.folder
        if not (folder / "node_modules").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, check=True)
        env = {**os.environ, **self.env()}
        self.gateway = subprocess.Popen(["node", self.script, "gateway", str(self.port)], cwd=folder, env=env)
        self.producer = subprocess.Popen(
            ["node", self.script, "producer", str(self.producer_port)], cwd=folder, env=env
        )
        self._wait_for(self.port)
        self._wait_for(self.producer_port)

    start_stream = Naive.start_stream


class Vercel(NodePeer):
    name = "vercel-rs"
    folder = "vercel"
    resume_by = "offset"

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis.url}


class VercelAI(NodePeer):
    """The AI SDK's resumable chat pipeline as its docs show it ("Chatbot Resume Streams"):
    `streamText` over a mock model, `toUIMessageStream`, `createUIMessageStreamResponse` with
    `consumeSseStream` -> `createNewResumableStream`; `resumeExistingStream` for each client. One SSE
    event per model chunk, each a data-only frame of JSON (`{"type":"text-delta","id":"0","delta":...}`),
    the stream ended by `data: [DONE]`. What the product's users run: measured for streams held only."""

    name = "vercel-ai"
    folder = "vercel"
    script = "ai-sdk.mjs"
    delta = b"message"  # data-only frames: every one is a `message` (harness.read_sse)
    capacity_only = True
    resume_by = None  # the package's `?skip=` is not in the docs' resume route

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis.url}

    def is_token(self, frame: harness.Frame) -> bool:
        # A text-delta chunk. The data is the SDK's JSON.stringify of the chunk, so `"type":"text-delta"`
        # can only be its structure (a quote inside a string would be escaped): no parse per frame for
        # the load generator, which tells every frame of thousands of streams apart several times.
        return b'"type":"text-delta"' in frame.data

    def payload(self, frame: harness.Frame) -> dict[str, Any]:
        return {"text": json.loads(frame.data)["delta"]}

    async def delays_ms(self, path: str, frames: list[harness.Frame]) -> list[float]:
        # The `append` clock has no producer time here: the SDK's chunks carry none (the UI message
        # stream is the SDK's, not ours to stamp), so on either clock a delay is from the token's due time.
        return [frame.received * 1000 - self.due_ms(frame) for frame in frames if self.is_token(frame)]

    def finished(self, frames: list[harness.Frame]) -> bool:
        # The SDK ends its SSE with the finish chunk, `{"type":"finish","finishReason":"stop"}` (no
        # usage: the UI message stream does not carry it), then `data: [DONE]`. It ends so after a
        # model's error too, with an error chunk and `"finishReason":"error"`: only "stop" is complete.
        if len(frames) < 2 or frames[-1].data != b"[DONE]":
            return False
        finish = json.loads(frames[-2].data)
        return bool(finish.get("type") == "finish" and finish.get("finishReason") == "stop")


class DurableStreams(NodePeer):
    """The Durable Streams reference server, file-backed (LMDB and append-only logs in this system's
    data folder), and a producer appending over HTTP with idempotent-producer headers. No Redis."""

    name = "durable-streams"
    folder = "durable-streams"
    delta = b"data"
    uses_redis = False
    resume_by = None  # by the offset its control events carry; its frames have no id to check the order by

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


SYSTEMS: dict[str, Callable[[RedisServer], System]] = {
    system.name: system for system in (Tokentail, Naive, Vercel, VercelAI, DurableStreams, TokentailGateway)
}
