"""Starting streams: the start rate a system sustains with arrivals spread (Poisson), and the CPU
each of its processes spends per start.

A start is what a new conversation costs: the request that starts a short run (tokentail:
`POST /v1/sessions`, the scripted model's shortest answer at once; the peers: `POST /start` to their
producer, two tokens 100 ms apart), then a new SSE client reading that stream to its end (its
opening, and the two or three events of so short a run). Arrivals are a
Poisson process (exponential gaps, the same seeded sequence for every system) at a rate, step by
step; a rate is held when the p99 of start -> first token event at its client is at most
FIRST_TOKEN_BOUND_MS and every stream ends complete. The ladder stops at the first rate not held.

CPU per start is each process's CPU over the step (from /proc), less what it spends idle (measured
just before, for as long as a step), divided by the starts: the idle share matters at low rates
(a worker polls, Redis runs its timers), not the starts' own cost.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import harness
import httpx2
from systems import System

# The bound on start -> first token's p99 for a rate to be held: the same 100 ms as a streams-held
# level's delivery delay (one at a time, on a quiet box, it is 4-10 ms for every system).
FIRST_TOKEN_BOUND_MS = 100


def cpu_reading(system: System) -> dict[str, float]:
    return system.cpu_seconds() | {
        "load": time.process_time(),
        "box": harness.box_cpu_seconds(),
    }


async def idle_cpu(system: System, seconds: float) -> dict[str, float]:
    """Each process's CPU while nothing is asked of it: seconds of CPU per second."""
    before, began = cpu_reading(system), time.monotonic()
    await asyncio.sleep(seconds)
    after, elapsed = cpu_reading(system), time.monotonic() - began
    return {role: (after[role] - before[role]) / elapsed for role in system.role_pids}


async def start_step(
    system: System,
    rate: float,
    seconds: float,
    idle: dict[str, float],
    run: tuple[int, float] | None = None,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Starts arriving at `rate` a second for `seconds`: first-token times, failures, CPU per start,
    tokens delivered. `run`: its tokens and tokens/s, if not the system's `short_run`; `settle`: what
    to wait for once every stream has ended, inside the CPU window (bench/trace_cost.py: the spans'
    export, which comes after)."""
    rng = random.Random(43)
    arrivals, at = [], rng.expovariate(rate)
    while at < seconds:
        arrivals.append(at)
        at += rng.expovariate(rate)
    first_ms: list[float] = []
    lags: list[float] = []  # how late the load generator sent each start: a saturated generator shows here
    failed = tokens_read = 0

    async def one(client: httpx2.AsyncClient, due: float) -> None:
        nonlocal failed, tokens_read
        await asyncio.sleep(max(0.0, due - (time.monotonic() - began)))
        lags.append(time.monotonic() - began - due)
        sent = time.time()
        try:
            tokens, pace = run or system.short_run
            path = await system.start_stream(client, tokens=tokens, rate=pace)
            frames = await asyncio.wait_for(harness.read_sse(system.port, path), harness.patience(30))
        except (httpx2.HTTPError, OSError, TimeoutError):
            failed += 1
            return
        deltas = [frame for frame in frames if system.is_token(frame)]
        if not deltas or not system.finished(frames):
            failed += 1
            return
        first_ms.append((deltas[0].received - sent) * 1000)
        tokens_read += sum(len(system.payload(frame)["text"].split()) for frame in deltas)

    limits = httpx2.Limits(max_connections=100)
    async with httpx2.AsyncClient(base_url=system.url, limits=limits, timeout=harness.patience(30)) as client:
        before, began = cpu_reading(system), time.monotonic()
        await asyncio.gather(*(one(client, due) for due in arrivals))
        if settle is not None:
            await settle()
        after, elapsed = cpu_reading(system), time.monotonic() - began
    cpu = {name: after[name] - before[name] for name in before}
    cpu["other"] = cpu.pop("box") - sum(cpu.values())
    starts = len(arrivals)
    return {
        "rate": rate,
        "starts": starts,
        "failed": failed,
        "tokens": tokens_read,
        "first_token_p50_ms": harness.percentile(first_ms, 50) if first_ms else float("inf"),
        "first_token_p99_ms": harness.percentile(first_ms, 99) if first_ms else float("inf"),
        "send_lag_p99_ms": harness.percentile(lags, 99) * 1000,
        "cpu_ms_per_start": {
            role: 1000 * max(0.0, cpu[role] - idle[role] * elapsed) / starts for role in system.role_pids
        },
        "cpu_share": {name: value / elapsed for name, value in cpu.items()},
    }


def held(step: dict[str, Any]) -> bool:
    return bool(step["first_token_p99_ms"] <= FIRST_TOKEN_BOUND_MS and not step["failed"])


async def start_rate(system: System, quick: bool, max_other: float) -> dict[str, Any]:
    """The ladder of start rates (`--quick`: 20 and 50 a second for 1.5 s each; else 50 to 800 for 10 s
    each), a disturbed step run again at most twice. CPU per start is reported at every step."""
    rates, seconds = ([20, 50], 1.5) if quick else ([50, 100, 200, 400, 800], 10.0)
    idle = await idle_cpu(system, min(seconds / 2, 5.0))
    figures: dict[str, Any] = {"bound_ms": FIRST_TOKEN_BOUND_MS, "seconds": seconds, "idle_cpu_share": idle}
    figures["steps"] = steps = []
    for rate in rates:
        for attempt in range(3):
            step = await start_step(system, rate, seconds, idle)
            other = step["cpu_share"]["other"]
            if other <= max_other or attempt == 2:
                break
            print(f"  {rate:4} starts/s: other work took {other:.0%} of a core meanwhile; run again")
        step["disturbed_runs_discarded"] = attempt
        steps.append(step)
        cpu = " ".join(f"{role} {ms:.2f}" for role, ms in step["cpu_ms_per_start"].items())
        share = " ".join(f"{name} {value:4.0%}" for name, value in step["cpu_share"].items())
        print(
            f"  {rate:4} starts/s: first token p50 {step['first_token_p50_ms']:6.1f} ms,"
            f" p99 {step['first_token_p99_ms']:6.1f} ms  failed {step['failed']}/{step['starts']}"
            f"  CPU ms per start: {cpu}  (CPU {share}; the load generator sent late by {step['send_lag_p99_ms']:.1f}"
            " ms at p99)"
        )
        if not held(step):
            break
    figures["rate_held"] = max((step["rate"] for step in steps if held(step)), default=0)
    # The headline: at the ladder's second rate (both systems reach it unless the box is very slow),
    # or the last one measured.
    reference = next((step for step in steps if step["rate"] == rates[1]), steps[-1])
    figures["cpu_rate"] = reference["rate"]
    figures["cpu_ms_per_start"] = reference["cpu_ms_per_start"]
    print(f"  sustained start rate, first token p99 <= {FIRST_TOKEN_BOUND_MS} ms: {figures['rate_held']} starts/s")
    return figures


async def before_and_after(
    ours: System, theirs: System, rate: float, seconds: float, rounds: int
) -> dict[str, dict[str, float]]:
    """CPU per start of each process, this tree's system (`ours`) and another revision's (`theirs`)
    in turns, `rounds` steps each at `rate`: the medians, and their ratios (after / before)."""
    measured: dict[str, list[dict[str, float]]] = {"after": [], "before": []}
    for label, system in harness.in_turns(rounds, ("before", theirs), ("after", ours)):
        await system.restart()
        idle = await idle_cpu(system, min(seconds / 2, 5.0))
        measured[label].append((await start_step(system, rate, seconds, idle))["cpu_ms_per_start"])
        system.stop()
    medians = {
        label: {role: sorted(step[role] for step in steps)[len(steps) // 2] for role in steps[0]}
        for label, steps in measured.items()
    }
    medians["ratio"] = {role: medians["after"][role] / medians["before"][role] for role in medians["after"]}
    return medians
