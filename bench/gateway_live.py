"""Gateway CPU per live event delivered, this tree's gateway against another revision's, in turns on
one private Redis (issue 69's goal: at most half of main's, at ~400 live SSE streams of ~20 events/s).

    .venv/bin/python bench/gateway_live.py --ref main                 # 400 streams, 4 rounds of 8 s each way
    .venv/bin/python bench/gateway_live.py --ref main --streams 100 --rounds 2 --window 4
    .venv/bin/python bench/gateway_live.py --quick --ref HEAD          # a check of the script, not a figure

Each gateway (no worker: each session's run stays queued, so its stream stays open) has `--streams`
sessions of its own, made by its own `POST /v1/sessions`, each followed by one SSE client (a process
of raw sockets for all of them, one per gateway). In a gateway's turn a publisher process appends
deltas to its sessions as a worker's append script does (`XADD <seq>-0` of `type`, `data`, `ts`, then
`PUBLISH` of `<seq> <ts> <type> <data>` on the session's channel), `--rate` events/s per stream spread
evenly, 20 events per round trip; after a warm-up, the gateway's CPU (/proc: user and system, 10 ms
ticks) over `--window` seconds is divided by the delta frames its clients read meanwhile. The other
gateway meanwhile only holds its idle streams. Turns alternate (each goes first as often); printed:
every turn, then the medians, their ratio (this tree / the revision), and the median of the rounds'
ratios. Also printed: each gateway's resident memory per open stream (its RSS with the streams open,
less its RSS before, over the streams), a figure of this one moment.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import baseline
import harness
import hiredis
import httpx2
import uvloop

from tokentail.redis_server import RedisServer, free_port

DELTA = b"event: message.delta\n"
PER_CALL = 20  # events per round trip of the publisher


# -- the clients (a process of their own) ------------------------------------------------------------


class _Stream(asyncio.Protocol):
    """One SSE stream on a raw socket: counts the delta frames it reads (a frame may span two reads)."""

    def __init__(self, path: str, counts: list[int], opened: asyncio.Queue[bool]) -> None:
        self.path, self.counts, self.opened = path, counts, opened
        self.head, self.tail = True, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        request = f"GET {self.path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
        transport.write(request.encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.head:
            self.head = False
            self.opened.put_nowait(b" 200 " in data.split(b"\r\n", 1)[0])
        seen = self.tail + data
        self.counts[0] += seen.count(DELTA)
        self.tail = seen[-(len(DELTA) - 1) :]


async def _clients(port: int, paths: list[str]) -> None:
    """Open every stream, say `ready`; then answer each line read with the frames read so far."""
    loop = asyncio.get_running_loop()
    counts, opened = [0], asyncio.Queue[bool]()
    streams = []
    for path in paths:
        streams.append(await loop.create_connection(lambda p=path: _Stream(p, counts, opened), "127.0.0.1", port))
    if not all([await opened.get() for _ in paths]):
        print("refused", flush=True)
        return
    print("ready", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        print(counts[0], flush=True)


# -- the publisher (a process of its own) ------------------------------------------------------------


def _publish(redis_port: int, prefix: str, sessions_file: str, rate: float) -> None:
    """Append and notify deltas to the sessions (`<sid> <run_id>` lines) at `rate` events/s in all,
    from after each stream's last id, until SIGTERM."""
    sessions = [line.split() for line in Path(sessions_file).read_text().splitlines()]
    keys = [f"{prefix}:{{{sid}}}:events".encode() for sid, _ in sessions]
    datas = [b'{"run_id":"%s","text":"token "}' % run_id.encode() for _, run_id in sessions]
    connection = socket.create_connection(("127.0.0.1", redis_port))
    reader = hiredis.Reader()

    def call(commands: list[tuple[bytes, ...]]) -> list[object]:
        connection.sendall(b"".join(hiredis.pack_command(command) for command in commands))
        replies: list[object] = []
        while len(replies) < len(commands):
            reader.feed(connection.recv(1 << 16))
            while (reply := reader.gets()) is not False:
                replies.append(reply)
        return replies

    tops = call([(b"XREVRANGE", key, b"+", b"-", b"COUNT", b"1") for key in keys])
    seqs = [int(top[0][0].split(b"-")[0]) + 1 if top else 1 for top in tops]  # type: ignore[index]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    period, due, i = PER_CALL / rate, time.monotonic(), 0
    while True:
        commands: list[tuple[bytes, ...]] = []
        ts = b"%d" % (time.time() * 1e6)
        for _ in range(PER_CALL):
            seq = b"%d" % seqs[i]
            commands.append((b"XADD", keys[i], b"MAXLEN", b"~", b"10000", seq + b"-0", b"type", b"message.delta",
                             b"data", datas[i], b"ts", ts))  # fmt: skip
            commands.append((b"PUBLISH", keys[i], b"%s %s message.delta %s" % (seq, ts, datas[i])))
            seqs[i] += 1
            i = (i + 1) % len(keys)
        call(commands)
        due += period
        time.sleep(max(0.0, due - time.monotonic()))


# -- the measurement ---------------------------------------------------------------------------------


class Gateway:
    """One gateway process (this tree's, or a revision's `tree`), its sessions and its clients."""

    def __init__(self, label: str, redis: RedisServer, tree: Path | None, folder: Path) -> None:
        self.label, self.redis, self.folder = label, redis, folder
        self.port = free_port()
        self.prefix = f"gl{os.getpid()}{label.replace('/', '')[:8]}"
        env = {
            **os.environ,
            "TOKENTAIL_REDIS_URL": redis.url,
            "TOKENTAIL_KEY_PREFIX": self.prefix,
            "TOKENTAIL_LOG_LEVEL": "warning",
            "TOKENTAIL_RUNS_PER_MINUTE": "0",
            "TOKENTAIL_MAX_STREAMS_PER_TENANT": "0",
        }
        cwd = harness.ROOT
        if tree is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
            cwd = tree
        command = [sys.executable, "-m", "tokentail.cli", "gateway", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, cwd=cwd)
        self.clients: subprocess.Popen[str] | None = None
        self.sessions_file = folder / f"sessions-{self.port}"

    async def open_streams(self, streams: int) -> float:
        """Make the sessions, open a stream of each; the gateway's resident bytes per open stream."""
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=harness.patience(30)) as http:
            deadline = time.monotonic() + harness.patience(30)
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {self.label} gateway did not start")
                await asyncio.sleep(0.1)
            made = []
            for _ in range(streams):
                body = {"input": "benchmark", "model": "scripted"}
                created = (await http.post("/v1/sessions", json=body)).raise_for_status().json()
                made.append((created["session_id"], created["run_id"]))
        self.sessions_file.write_text("".join(f"{sid} {run_id}\n" for sid, run_id in made))
        paths = self.folder / f"paths-{self.port}"
        paths.write_text("\n".join(f"/v1/sessions/{sid}/events" for sid, _ in made))
        await asyncio.sleep(1)
        before = _rss(self.process.pid)
        self.clients = _role("clients", str(self.port), str(paths), piped=True)
        assert self.clients.stdout is not None
        if (line := self.clients.stdout.readline().strip()) != "ready":
            raise RuntimeError(f"the {self.label} gateway's streams did not open: {line!r}")
        await asyncio.sleep(2)
        return (_rss(self.process.pid) - before) / streams

    def frames(self) -> int:
        assert self.clients is not None and self.clients.stdin is not None and self.clients.stdout is not None
        self.clients.stdin.write("\n")
        self.clients.stdin.flush()
        return int(self.clients.stdout.readline())

    async def turn(self, rate: float, warm_up: float, window: float) -> dict[str, float]:
        """Its sessions appended to at `rate` events/s in all; its CPU per delta frame read."""
        publisher = _role("publish", str(self.redis.port), self.prefix, str(self.sessions_file), str(rate))
        try:
            await asyncio.sleep(warm_up)
            frames, cpu = self.frames(), harness.cpu_seconds(self.process.pid)
            split, began = _split(self.process.pid), time.monotonic()
            await asyncio.sleep(window)
            frames = self.frames() - frames
            cpu = harness.cpu_seconds(self.process.pid) - cpu
            user, system = (after - before for after, before in zip(_split(self.process.pid), split, strict=True))
            elapsed = time.monotonic() - began
        finally:
            harness.stop_process(publisher)  # type: ignore[arg-type]
        await asyncio.sleep(1)  # what is on its way is read before the other's turn
        per = 1e6 / max(1, frames)
        return {"us_per_event": cpu * per, "user": user * per, "sys": system * per, "events_per_s": frames / elapsed}

    def stop(self) -> None:
        if self.clients is not None:
            self.clients.kill()
            self.clients.wait()
        harness.stop_process(self.process)  # type: ignore[arg-type]


def _role(*args: str, piped: bool = False) -> "subprocess.Popen[str]":
    """This script in another process, as the clients or the publisher."""
    pipe = subprocess.PIPE if piped else None
    return subprocess.Popen([sys.executable, __file__, *args], stdin=pipe, stdout=pipe, text=True)


def _split(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / harness.TICKS, int(fields[12]) / harness.TICKS


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def measure(ref: str, streams: int, rate: float, rounds: int, warm_up: float, window: float) -> dict[str, object]:
    commit = baseline.commit_of(ref)
    assert commit is not None, f"no commit {ref}"
    with tempfile.TemporaryDirectory() as data_dir, RedisServer(Path(data_dir)) as redis:
        folder = Path(data_dir)
        gateways = [
            Gateway(ref, redis, baseline.gateway_tree(commit, folder / "tree"), folder),
            Gateway("tree", redis, None, folder),
        ]
        measured: dict[str, list[dict[str, float]]] = {gateway.label: [] for gateway in gateways}
        try:
            memory = {gateway.label: await gateway.open_streams(streams) for gateway in gateways}
            for round_ in range(rounds):
                load = os.getloadavg()[0]
                for gateway in gateways if round_ % 2 == 0 else gateways[::-1]:
                    figures = await gateway.turn(rate * streams, warm_up, window)
                    measured[gateway.label].append(figures)
                    cells = " ".join(f"{name} {value:.1f}" for name, value in figures.items())
                    print(f"  round {round_ + 1} {gateway.label:>8}: {cells} (load {load:.2f})", flush=True)
        finally:
            for gateway in gateways:
                gateway.stop()
    medians = {
        label: {name: statistics.median(turn[name] for turn in turns) for name in turns[0]}
        for label, turns in measured.items()
    }
    ours, theirs = medians["tree"]["us_per_event"], medians[ref]["us_per_event"]
    pairs = [a["us_per_event"] / b["us_per_event"] for a, b in zip(measured["tree"], measured[ref], strict=True)]
    return {
        "medians": medians,
        "ratio": ours / theirs,
        "ratio_of_rounds": statistics.median(pairs),
        "rss_per_stream": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="main", help="the revision to measure this tree against")
    parser.add_argument("--streams", type=int, default=400, help="open SSE streams on each gateway")
    parser.add_argument("--rate", type=float, default=20.0, help="events/s per stream in a gateway's turn")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured in each turn")
    parser.add_argument("--warm-up", type=float, default=2.0, help="seconds of each turn before its window")
    parser.add_argument("--quick", action="store_true", help="20 streams, one round of 1 s: a check of the script")
    parser.add_argument("--json", dest="output", help="also write the figures to this file")
    options = parser.parse_args()
    if options.quick:
        options.streams, options.rounds, options.window, options.warm_up = 20, 1, 1.0, 0.5
    harness.calibrate()
    print(
        f"== gateway CPU per live event: {options.streams} SSE streams at {options.rate:g} events/s each,"
        f" this tree against {options.ref}, {options.rounds} rounds of {options.window:g} s in turns"
    )
    figures = uvloop.run(
        measure(options.ref, options.streams, options.rate, options.rounds, options.warm_up, options.window)
    )
    medians = figures["medians"]
    assert isinstance(medians, dict)
    for label, values in medians.items():
        cells = " ".join(f"{name} {value:.1f}" for name, value in values.items())
        print(f"  median {label:>8}: {cells}")
    memory = figures["rss_per_stream"]
    assert isinstance(memory, dict)
    print("  resident bytes per open stream: " + ", ".join(f"{label} {value:.0f}" for label, value in memory.items()))
    ratio, of_rounds = figures["ratio"], figures["ratio_of_rounds"]
    print(f"  ratio (tree / {options.ref}): {ratio:.2f}x, median of the rounds' ratios {of_rounds:.2f}x")
    if options.output:
        Path(options.output).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "clients":
        uvloop.run(_clients(int(sys.argv[2]), Path(sys.argv[3]).read_text().split()))
    elif len(sys.argv) > 1 and sys.argv[1] == "publish":
        _publish(int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]))
    else:
        main()
