"""The gateway's CPU per stream started: `POST /v1/sessions` (queueing its first run) and opening
that session's event stream, each measured apart, on gateways of several revisions in one command.

    .venv/bin/python bench/start_cost.py                                 # this work tree
    .venv/bin/python bench/start_cost.py --ref main --ref tree -n 3000   # main's and this tree's, in turns
    .venv/bin/python bench/start_cost.py --hot-routes both               # FastAPI's routes, then the hot routes

Each round: a private redis-server, one `tokentail gateway` process (auth on: an API key, stream
tokens; no tenant limits), and a client of raw asyncio sockets with `--concurrency` requests in
flight. No worker runs: the runs stay queued, so each stream opens, sends its head and waits; the
client reads the head and closes. CPU is the gateway's `utime + stime` from /proc over each phase,
divided by its requests; Redis's the same. `--ref` runs the gateway of a commit (its tree extracted
with `git archive`), so "before" and "after" are measured in the same command, in turns. Figures
are printed, never asserted.
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
from pathlib import Path

import baseline
from harness import ROOT, cpu_seconds

from tokentail.redis_server import RedisServer, free_port

KEY = "bench-key-0123456789abcdef"


async def request(port: int, head: bytes, body: bytes = b"", until: bytes = b"\r\n\r\n") -> bytes:
    """One request on its own connection; the answer's bytes up to the end of `until`'s first occurrence
    after the head (a JSON body's end, or the stream's first frame)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        answer = await reader.readuntil(b"\r\n\r\n")
        if b"content-length:" in answer.lower():
            length = int(answer.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            return answer + await reader.readexactly(length)
        return answer + await reader.readuntil(until)
    finally:
        writer.close()


def post_session() -> tuple[bytes, bytes]:
    body = json.dumps({"input": "hello", "model": "scripted"}).encode()
    head = (
        b"POST /v1/sessions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer " + KEY.encode()
        + b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
    )  # fmt: skip
    return head, body


def open_stream(session_id: str, token: str) -> bytes:
    return (
        f"GET /v1/sessions/{session_id}/events HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"authorization: Bearer {token}\r\naccept: text/event-stream\r\n\r\n"
    ).encode()


async def in_flight(count: int, concurrency: int, make: "callable") -> list[bytes]:  # type: ignore[valid-type]
    results: list[bytes] = [b""] * count
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            index, next_index = next_index, next_index + 1
            results[index] = await make(index)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return results


def spawn_gateway(tree: Path | None, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`tokentail gateway`, of `tree` if given (its view, first on the import path) else of this tree."""
    command = [sys.executable, "-m", "tokentail.cli", "gateway", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, env={**env, **({"PYTHONPATH": str(tree)} if tree else {})}, cwd=tree or ROOT)


async def measure(tree: Path | None, requests: int, concurrency: int, hot_routes: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        redis = RedisServer(data_dir, port=free_port())
        redis.start()
        port = free_port()
        env = {
            **os.environ,
            "TOKENTAIL_REDIS_URL": redis.url,
            "TOKENTAIL_API_KEYS": f"bench:{KEY}",
            "TOKENTAIL_SECRET": "s" * 32,
            "TOKENTAIL_LOG_LEVEL": "warning",
            "TOKENTAIL_RUNS_PER_MINUTE": "0",
            "TOKENTAIL_MAX_STREAMS_PER_TENANT": "0",
            "TOKENTAIL_HOT_ROUTES": "true" if hot_routes else "false",  # a revision before the switch has them on
        }
        gateway = spawn_gateway(tree, port, env)
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)  # noqa: ASYNC210, S310
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            head, body = post_session()
            await in_flight(200, concurrency, lambda _: request(port, head, body))  # warm-up
            gateway_cpu, redis_cpu = cpu_seconds(gateway.pid), cpu_seconds(redis.process.pid)
            created = await in_flight(requests, concurrency, lambda _: request(port, head, body))
            post = cpu_seconds(gateway.pid) - gateway_cpu, cpu_seconds(redis.process.pid) - redis_cpu
            answers = [json.loads(answer.split(b"\r\n\r\n", 1)[1]) for answer in created]
            if len(answers) != requests or any("session_id" not in answer for answer in answers):
                raise RuntimeError(f"a POST failed: {created[0][:300]!r}")
            gateway_cpu, redis_cpu = cpu_seconds(gateway.pid), cpu_seconds(redis.process.pid)
            opened = await in_flight(
                requests,
                concurrency,
                lambda i: request(
                    port, open_stream(answers[i]["session_id"], answers[i]["stream_token"]), until=b"\n\n"
                ),
            )
            await asyncio.sleep(0.5)  # the closed streams' ends (slots given back)
            opening = cpu_seconds(gateway.pid) - gateway_cpu, cpu_seconds(redis.process.pid) - redis_cpu
            if any(not answer.startswith(b"HTTP/1.1 200") for answer in opened):
                raise RuntimeError(f"a stream failed to open: {opened[0][:300]!r}")
        finally:
            gateway.terminate()
            gateway.wait(30)
            redis.stop()
    ms = 1000 / requests
    return {
        "post_gateway_ms": post[0] * ms,
        "post_redis_ms": post[1] * ms,
        "open_gateway_ms": opening[0] * ms,
        "open_redis_ms": opening[1] * ms,
    }


async def main(refs: list[str | None], requests: int, concurrency: int, repeats: int, hot: list[bool]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        trees: dict[str | None, Path | None] = {}
        for ref in refs:
            if ref is None or ref == "tree":
                trees[ref] = None
                continue
            commit = baseline.commit_of(ref)
            if commit is None:
                raise SystemExit(f"no commit {ref!r}")
            trees[ref] = baseline.gateway_tree(commit, Path(scratch) / ref.replace("/", "_"))
        runs = [(ref, on) for ref in refs for on in hot]
        figures: dict[tuple[str | None, bool], list[dict[str, float]]] = {run: [] for run in runs}
        for round_ in range(repeats):
            for ref, on in runs:
                began = time.monotonic()
                figures[ref, on].append(await measure(trees[ref], requests, concurrency, on))
                print(f"round {round_ + 1} {label(ref, on)}: {figures[ref, on][-1]} ({time.monotonic() - began:.0f} s)")
    names = list(figures[runs[0]][0])
    print(f"\nCPU ms per request (median of {repeats}), {requests} requests, {concurrency} in flight")
    print("  " + " ".join(f"{name:>24}" for name in ["revision", *names]))
    medians = {
        run: {n: sorted(f[n] for f in rounds)[len(rounds) // 2] for n in names} for run, rounds in figures.items()
    }
    for run in runs:
        print("  " + f"{label(*run):>24} " + " ".join(f"{medians[run][n]:24.3f}" for n in names))
    if len(runs) > 1:
        first, last = medians[runs[0]], medians[runs[-1]]
        print("  " + f"{'ratio, last / first':>24} " + " ".join(f"{last[n] / first[n]:23.2f}x" for n in names))


def label(ref: str | None, hot_routes: bool) -> str:
    return f"{ref or 'tree'}{'' if hot_routes else ', no hot routes'}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ref", action="append", help="a git revision whose gateway to measure, or `tree`: this work tree (repeatable)"
    )
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=20)
    parser.add_argument("-r", "--repeats", type=int, default=3)
    parser.add_argument(
        "--hot-routes",
        choices=("on", "off", "both"),
        default="on",
        help="the gateway's hot routes (TOKENTAIL_HOT_ROUTES): on, off (FastAPI's routes), or both in turns",
    )
    args = parser.parse_args()
    hot = {"on": [True], "off": [False], "both": [False, True]}[args.hot_routes]
    asyncio.run(main(args.ref or [None], args.requests, args.concurrency, args.repeats, hot))
