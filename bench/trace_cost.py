"""What traces cost: the gateway's and the worker's CPU per start and per 1,000 tokens with tracing on
(every span sampled and exported over OTLP/HTTP) against off, in one command.

    .venv/bin/python bench/trace_cost.py           # 3 rounds each way, in turns (see docs/benchmarks.md)
    .venv/bin/python bench/trace_cost.py --quick   # 1 round of short steps, under 30 s: to check the script (CI)

One private redis-server and two tokentail systems on it (bench/systems.py: `tokentail gateway` and
`tokentail worker` with the offline scripted model), alike but for their environment: "on" exports every
span (OTEL_TRACES_SAMPLER=always_on) to bench/otlp_sink.py, a collector stand-in in a process of its own
that discards them (its CPU is no one's here); "off" has no OTEL_* at all. They run in turns, the order
swapped every round so that the box's drift counts for both alike, each turn on fresh processes after a
warm-up. A turn is two of bench/starts.py's steps (starts arriving as a Poisson process, each read by a
new SSE client to its end; each process's CPU from /proc over the step, less its idle CPU) and a level:

- per start: the scripted model's shortest answer, as bench.py's CPU per start: the request, the queue,
  the run, the stream's opening and end, where a run's spans are made;
- per 1,000 tokens: runs of 300 tokens at 50 tokens/s (bench.py's streams), whole: their starts and ends
  included, for the same reason;
- per 1,000 tokens, steady: bench.py's own measure (bench/levels.py), 100 such runs started within a
  second, CPU over the middle of the runs only (all started, none ended), over the tokens read meanwhile:
  what is paid per token, apart from what is paid per run. Not with `--quick` (CI's time).

A step's window closes once the sink has been quiet for longer than the batch processor's delay, which
is 500 ms here (OTEL_BSP_SCHEDULE_DELAY, 5 s by default) so that each window holds its own exports: "on"
counts making the spans and batching, encoding and sending them. The medians of the rounds are printed,
with on / off. Figures are printed, never asserted.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import httpx2
import levels
import starts
import uvloop
from harness import ROOT
from systems import RATE, TOKENS, Tokentail

from tokentail.redis_server import RedisServer, free_port

BSP_DELAY_MS = 500
ROLES = {"gateway": "gateway", "producer": "worker", "redis": "redis"}


class Sink:
    """bench/otlp_sink.py, running: what it received, and a wait for the exports to be over."""

    def __init__(self) -> None:
        self.port = free_port()
        script = Path(__file__).resolve().parent / "otlp_sink.py"
        self.process = subprocess.Popen([sys.executable, str(script), str(self.port)])
        self.client = httpx2.AsyncClient(base_url=f"http://127.0.0.1:{self.port}")

    def env(self) -> dict[str, str]:
        """What makes a process trace every span and export it here."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": str(BSP_DELAY_MS),
        }

    async def received(self) -> dict[str, int]:
        deadline = time.monotonic() + harness.patience(20)
        while True:
            try:
                answer: dict[str, int] = (await self.client.get("/")).raise_for_status().json()
                return answer
            except httpx2.TransportError:
                if time.monotonic() > deadline:  # it never started
                    raise
                await asyncio.sleep(0.05)

    async def quiet(self) -> None:
        """Until no export has come for longer than the batch processor's delay: the spans of what has
        ended are out. (Off, nothing comes: the same wait, idle.)"""
        last, since = await self.received(), time.monotonic()
        while time.monotonic() - since < BSP_DELAY_MS / 1000 + harness.patience(0.3):  # the delay is wall time
            await asyncio.sleep(0.1)
            if (now := await self.received()) != last:
                last, since = now, time.monotonic()

    async def close(self) -> None:
        await self.client.aclose()
        harness.stop_process(self.process)


async def turn(system: Tokentail, sink: Sink, quick: bool) -> dict[str, Any]:
    """One way's turn on fresh processes: a warm-up, then CPU per start and per 1,000 tokens of whole runs;
    and, but with `quick`, per 1,000 tokens over the steady part of a level, as bench.py measures it."""
    rate, seconds, warm = (50, 1.0, 0.5) if quick else (100, 10.0, 1.0)
    tokens = 100 if quick else TOKENS
    await system.restart()
    try:
        unmeasured = dict.fromkeys(system.processes, 0.0)
        await starts.start_step(system, rate, warm, unmeasured, settle=sink.quiet)  # imports, first exports
        idle = await starts.idle_cpu(system, min(seconds / 2, 5.0))
        before = await sink.received()
        short = await starts.start_step(system, rate, seconds, idle, settle=sink.quiet)
        middle = await sink.received()
        long = await starts.start_step(system, 20, seconds, idle, run=(tokens, RATE), settle=sink.quiet)
        after = await sink.received()
        steady = None if quick else await levels.run_level(system, 100, tokens)  # CI's time: not in --quick
    finally:
        system.stop()
    figures = {
        "failed": short["failed"] + long["failed"],
        "other_cpu_share": max(short["cpu_share"]["other"], long["cpu_share"]["other"]),
        "first_token_p50_ms": short["first_token_p50_ms"],
        "first_token_p99_ms": short["first_token_p99_ms"],
        "starts": short["starts"],
        "runs": long["starts"],
        "tokens": long["tokens"],
        "ms_per_start": {ROLES[role]: ms for role, ms in short["cpu_ms_per_start"].items()},
        # The step's CPU per run, times its runs, over its tokens.
        "ms_per_1k_tokens": {
            ROLES[role]: ms * long["starts"] / max(1, long["tokens"]) * 1000
            for role, ms in long["cpu_ms_per_start"].items()
        },
        "otlp_kb_per_start": (middle["bytes"] - before["bytes"]) / 1000 / short["starts"],
        "otlp_kb_per_1k_tokens": (after["bytes"] - middle["bytes"]) / max(1, long["tokens"]),
        "otlp_exports": after["exports"] - before["exports"],
    }
    if steady is not None:  # the middle of the runs alone: every stream started, none ended
        figures["ms_per_1k_tokens_steady"] = {
            ROLES[role]: 1e6 * steady.cpu[role] / max(1, steady.tokens) for role in ROLES
        }
        figures["streams"] = steady.streams
        figures["failed"] += steady.incomplete
        figures["other_cpu_share"] = max(figures["other_cpu_share"], steady.cpu["other"] / steady.seconds)
    return figures


def commit() -> str:
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return described.stdout.strip() or "unknown"


async def main(quick: bool, rounds: int, output: str | None) -> None:
    began = time.monotonic()
    slowness = harness.calibrate()
    # "Off" is off whatever the shell says; "on" is the sink's variables alone.
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        del os.environ[name]
    print(
        f"== tracing's cost at {commit()}: {rounds} round(s), off and on in turns, the order swapped each round"
        f" (this box takes {slowness:.2f}x the reference box's time)"
    )
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    sink = Sink()
    try:
        await sink.received()  # it listens
        with tempfile.TemporaryDirectory() as data_dir, RedisServer(data_dir) as redis:
            systems = {"off": Tokentail(redis), "on": Tokentail(redis)}
            systems["on"].extra_env = sink.env()
            for round_ in range(rounds):
                for way in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                    figures = await turn(systems[way], sink, quick)
                    results[way].append(figures)
                    print(f"  round {round_ + 1} {way:3}: {line(figures)}")
                    if (way == "on") != (figures["otlp_exports"] > 0):
                        raise SystemExit(
                            f"tracing {way}, but {figures['otlp_exports']} exports came: is tokentail[otel]"
                            " installed (./scripts/install test)?"
                        )
    finally:
        await sink.close()
    report(results)
    seconds = round(time.monotonic() - began)
    print(f"  ({seconds} s)")
    if output:
        Path(output).write_text(json.dumps({"commit": commit(), "seconds": seconds, **results}, indent=2))  # noqa: ASYNC240  # once, at the end


def line(figures: dict[str, Any]) -> str:
    per_start = " ".join(f"{role} {ms:.2f}" for role, ms in figures["ms_per_start"].items())
    per_1k = " ".join(f"{role} {ms:.1f}" for role, ms in figures["ms_per_1k_tokens"].items())
    steady = " ".join(f"{role} {ms:.1f}" for role, ms in figures.get("ms_per_1k_tokens_steady", {}).items())
    return (
        f"CPU ms per start: {per_start}; per 1k tokens: {per_1k}{f'; steady: {steady}' if steady else ''}"
        f"  (first token p50 {figures['first_token_p50_ms']:.1f} ms; failed {figures['failed']};"
        f" other CPU {figures['other_cpu_share']:.0%})"
    )


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    def median(way: str, *keys: str) -> float:
        values = []
        for figures in results[way]:
            value: Any = figures
            for key in keys:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    on = results["on"][0]
    print(
        f"== median of {len(results['on'])} round(s): CPU ms, tracing off and on (every span exported);"
        f" per start: {on['starts']} starts; per 1k tokens: {on['runs']} runs, {on['tokens']} tokens"
        + (f"; steady: {on['streams']} streams" if "streams" in on else "")
    )
    rows = [("", "off", "on", "on / off")]
    measures = (
        ("ms_per_start", "per start"),
        ("ms_per_1k_tokens", "per 1k tokens"),
        ("ms_per_1k_tokens_steady", "per 1k tokens, steady"),
    )
    for measure, label in measures:
        if measure not in on:
            continue
        for role in ROLES.values():
            off_ms, on_ms = median("off", measure, role), median("on", measure, role)
            ratio = f"{on_ms / off_ms:.2f}x" if off_ms else "n/a"
            rows.append((f"{role} CPU ms {label}", f"{off_ms:.2f}", f"{on_ms:.2f}", ratio))
    for key in ("first_token_p50_ms", "first_token_p99_ms"):
        off_ms, on_ms = median("off", key), median("on", key)
        rows.append(
            (f"start -> first token {key.split('_')[2]}, ms", f"{off_ms:.1f}", f"{on_ms:.1f}", f"{on_ms / off_ms:.2f}x")
        )
    rows.append(("OTLP sent per start, KB", "0", f"{median('on', 'otlp_kb_per_start'):.2f}", ""))
    rows.append(("OTLP sent per 1k tokens, KB", "0", f"{median('on', 'otlp_kb_per_1k_tokens'):.2f}", ""))
    for row in rows:
        print("  | " + " | ".join(row) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round of 1.5 s steps, to check the script")
    parser.add_argument("--rounds", type=int, help="turns each way (3, or 1 with --quick)")
    parser.add_argument("--json", dest="output", help="also write the figures to this file")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # figures appear as measured
    uvloop.run(main(args.quick, args.rounds or (1 if args.quick else 3), args.output))
