"""Streams held: concurrent streams at 50 tokens/s, level by level, each read by its own SSE client,
started within one second (a burst: the figure every run of this benchmark has given) or spread
over 10 s; and from the same runs, delivery delay by load (the curve: p50 and p99 at every level)
and each process's CPU per 1,000 tokens.

A run during which the rest of the machine used more than `max_other` of a core is run again (at
most twice the repeats, then kept as it is), and counted: on a shared box, it says little about the
system measured.
"""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import harness
import httpx2
from systems import RATE, TOKENS, System, connections_of, redis_clients

BOUND_MS = 100  # a level is held when the median of its runs' p99 delivery delays is at most this
# Past the streams held, the burst's levels go on while the median p99 stays under this (and every
# stream ends): the curve shows where it bends, and both systems have costs at the levels the goals name.
CURVE_MS = 500
MAX_STREAMS = 10_000  # where the search for a system's first missed level stops (`to_the_first_miss`)


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


@dataclass
class Run:
    """One repetition of one level. CPU and deliveries are counted over the steady part of the run
    (after every stream started, before any ended), so starting streams is left out for all systems
    alike (tokentail's gateway creates sessions; the peers' producers start their streams)."""

    streams: int
    spread: float = 1.0  # the seconds over which the streams started
    delays_ms: list[float] = field(default_factory=list)
    appended: list[float] = field(default_factory=list)  # when each token event was appended (s after the level began)
    incomplete: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process over the window
    seconds: float = 0.0  # the window
    events: int = 0  # token events delivered in the window
    tokens: int = 0  # tokens delivered in the window
    gateway_connections: int = 0  # the gateway's own, counted by `ss` (systems with Redis)
    redis_clients: int = 0  # every process's (INFO clients), while all streams are open (systems with Redis)
    # Each process's worst event-loop lag over the whole run (starts and ends too), as its histogram's
    # bucket bound (s; tokentail's processes: shared/plumbing/loop_lag.py)
    loop_lag: dict[str, float] = field(default_factory=dict)

    @property
    def p99(self) -> float:
        return harness.percentile(self.delays_ms, 99) if self.delays_ms else float("inf")

    def phase_p99(self) -> dict[str, float]:
        """The p99 of the events appended while streams were starting (the spread and half a second:
        the first 1.5 s of a burst), in the steady part, and after it (while streams end): what
        limits a level, starts, streaming or ends."""
        starting = self.spread + 0.5
        ends = {"starting": starting, "steady": starting + self.seconds, "ending": float("inf")}
        phases: dict[str, list[float]] = {name: [] for name in ends}
        for at, delay in zip(self.appended, self.delays_ms, strict=True):
            phases[next(name for name, end in ends.items() if at < end)].append(delay)
        return {name: harness.percentile(delays, 99) if delays else float("nan") for name, delays in phases.items()}


async def run_level(
    system: System,
    streams: int,
    tokens: int,
    spread: float = 1.0,
    probe: Callable[[], Awaitable[None]] | None = None,
) -> Run:
    """`streams` runs at 50 tokens/s started over `spread` seconds, each read by one SSE client. The
    runs must outlast the spread by 1.5 s at least: the steady part is between the last start (and
    half a second) and the first end (less half a second). `probe`: awaited at both ends of the steady
    part, after the CPU readings (bench/commandstats.py: what Redis ran in it)."""
    run = Run(streams, spread)
    began = time.time()
    window: list[float] = []
    readings: list[dict[str, float]] = []

    def reading() -> dict[str, float]:
        return system.cpu_seconds() | {
            "load": time.process_time(),
            "box": harness.box_cpu_seconds(),
        }

    async def steady_window() -> None:
        await asyncio.sleep(spread + 0.5)  # every stream has started
        window.append(time.time())
        readings.append(reading())
        if probe is not None:
            await probe()
        if system.uses_redis:
            run.gateway_connections = connections_of(system.processes["gateway"].pid, system.redis.port)
            run.redis_clients = await redis_clients(system.redis)
        await asyncio.sleep(max(0.5, tokens / RATE - spread - 1.0))  # before the first stream ends
        window.append(time.time())
        readings.append(reading())
        if probe is not None:
            await probe()

    all_frames: list[list[harness.Frame]] = []
    limits = httpx2.Limits(max_connections=50)
    async with httpx2.AsyncClient(base_url=system.url, limits=limits, timeout=harness.patience(30)) as client:
        lags = {role: await harness.loop_lag_buckets(client, url) for role, url in system.metrics_urls().items()}

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
            received = [frame.received for frame in frames if system.is_token(frame)]
            run.appended += [at - delay / 1000 - began for at, delay in zip(received, delays, strict=True)]
            run.delays_ms += delays
            all_frames.append(frames)

        await asyncio.gather(steady_window(), *(one(i * spread / streams) for i in range(streams)))
        for role, url in system.metrics_urls().items():
            run.loop_lag[role] = harness.worst_lag(lags[role], await harness.loop_lag_buckets(client, url))
    run.seconds = window[1] - window[0]
    run.cpu = {name: readings[1][name] - readings[0][name] for name in readings[0]}
    # What the rest of the machine used meanwhile (other programs, kernel threads): on a shared box,
    # the way to tell a disturbed repeat from a slow system.
    run.cpu["other"] = run.cpu.pop("box") - sum(run.cpu.values())
    for frames in all_frames:
        for frame in frames:
            if system.is_token(frame) and window[0] <= frame.received < window[1]:
                run.events += 1
                run.tokens += len(system.payload(frame)["text"].split())
    return run


async def repeat_level(
    system: System, streams: int, tokens: int, repeats: int, max_other: float, spread: float = 1.0
) -> tuple[list[Run], int]:
    """`repeats` undisturbed runs of a level, and how many disturbed ones were run again."""
    runs: list[Run] = []
    discarded = 0
    while len(runs) < repeats:
        run = await run_level(system, streams, tokens, spread)
        other = run.cpu["other"] / run.seconds
        if other > max_other and discarded < 2 * repeats:
            discarded += 1
            print(f"  {streams:5} streams: other work took {other:.0%} of a core meanwhile; run again")
            continue
        runs.append(run)
    return runs, discarded


def level_figures(system: System, streams: int, runs: list[Run], discarded: int) -> dict[str, Any]:
    level: dict[str, Any] = {
        "streams": streams,
        "p99_ms": summary([run.p99 for run in runs]),
        "p50_ms": summary([harness.percentile(run.delays_ms, 50) if run.delays_ms else float("inf") for run in runs]),
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
        # Each process's, median of the runs: gateway, producer, redis (if it uses it).
        "s_per_1k_tokens": {
            k: statistics.median(1000 * run.cpu[k] / max(1, run.tokens) for run in runs) for k in system.processes
        },
        "cpu_share": {k: statistics.median(run.cpu[k] / run.seconds for run in runs) for k in runs[0].cpu},
        "events_per_s": statistics.median(run.events / run.seconds for run in runs),
        # Token events delivered per token: how much each system joins (tokentail's writer joins harder
        # under load; the product peer sends one event per chunk).
        "events_per_token": statistics.median(run.events / max(1, run.tokens) for run in runs),
        "other_cpu_share_max": max(run.cpu["other"] / run.seconds for run in runs),  # the worst repeat
        "disturbed_runs_discarded": discarded,
        # Each process's worst event-loop lag, of every repeat: its histogram bucket's bound (s)
        "loop_lag_worst_s": {role: max(run.loop_lag[role] for run in runs) for role in runs[0].loop_lag},
    }
    if system.uses_redis:
        level["gateway_redis_connections_per_stream"] = statistics.median(
            run.gateway_connections / streams for run in runs
        )
        level["redis_clients_per_stream"] = statistics.median(
            (run.redis_clients - system.base_clients) / streams for run in runs
        )
    return level


def print_level(system: System, level: dict[str, Any]) -> None:
    redis = "no Redis"
    if system.uses_redis:
        redis = (
            f"Redis conns/stream: gateway {level['gateway_redis_connections_per_stream']:.2f},"
            f" all (INFO) {level['redis_clients_per_stream']:.2f}"
        )
    p99, cpu = level["p99_ms"], " ".join(f"{k} {v:4.0%}" for k, v in level["cpu_share"].items())
    lags = level.get("loop_lag_worst_s") or {}
    lag = f"  worst loop lag {' '.join(f'{k} <= {v:g} s' for k, v in lags.items())}" if lags else ""
    print(
        f"  {level['streams']:5} streams: p99 {p99['min']:7.1f} / {p99['median']:7.1f} / {p99['max']:7.1f} ms"
        f" (min/median/max)  gateway {level['gateway_us_per_event']['median']:6.1f} µs/event"
        f"  system {level['system_s_per_1k_tokens']['median']:.3f} s/1k tokens"
        f"  {level['events_per_token']:.2f} events/token  CPU {cpu}"
        f"  {redis}  failed {level['incomplete']}{lag}"
        f"  (p99 by phase, median: {' / '.join(f'{v:.1f}' for v in level['p99_ms_by_phase'].values())} ms"
        " starting / steady / ending)"
        f"  (other CPU, worst repeat {level['other_cpu_share_max']:.0%};"
        f" {level['disturbed_runs_discarded']} disturbed run(s) discarded)"
    )


def is_held(level: dict[str, Any]) -> bool:
    return bool(level["p99_ms"]["median"] <= BOUND_MS and not level["incomplete"])


def held(levels: list[dict[str, Any]]) -> int:
    """The last level of the unbroken run of held levels from the first (0 if the first is not held)."""
    count = 0
    for level in levels:
        if not is_held(level):
            break
        count = level["streams"]
    return count


def first_miss(levels: list[dict[str, Any]]) -> int | None:
    """The level after the unbroken run of held levels from the first, if one was measured."""
    count = held(levels)
    return next((level["streams"] for level in levels if level["streams"] > count and not is_held(level)), None)


async def to_the_first_miss(
    measure: Callable[[int], Awaitable[dict[str, Any]]], levels: list[dict[str, Any]], bisect: bool
) -> dict[str, Any]:
    """Streams held, never a ceiling: past the last level while every level is held (each 1.25x the
    one before, to MAX_STREAMS), then halving the gap between the last level held and the first
    missed until it is within 5% (25 streams at least). `measure` runs one level; the levels it ran
    are in "bisection", apart from the listed ones (the curve)."""
    count, miss = held(levels), first_miss(levels)
    tried: list[dict[str, Any]] = []

    async def at(streams: int) -> bool:
        level = await measure(streams)
        tried.append(level)
        return is_held(level)

    while bisect and miss is None and count and count < MAX_STREAMS and count == levels[-1]["streams"]:
        streams = min(MAX_STREAMS, _rounded(count * 1.25))
        if await at(streams):
            count = streams
        else:
            miss = streams
    while bisect and count and miss is not None and miss - count > max(25, 0.05 * count):
        streams = _rounded((count + miss) / 2)
        if streams in (count, miss):
            break
        if await at(streams):
            count = streams
        else:
            miss = streams
    return {"streams_held": count, "first_miss": miss, "bisection": tried}


def measurer(
    system: System, tokens: int, repeats: int, max_other: float, spread: float = 1.0
) -> Callable[[int], Awaitable[dict[str, Any]]]:
    """One level's figures, printed: `repeats` undisturbed runs of `tokens` tokens, started over `spread` s."""

    async def measure(streams: int) -> dict[str, Any]:
        runs, discarded = await repeat_level(system, streams, tokens, repeats, max_other, spread)
        level = level_figures(system, streams, runs, discarded)
        print_level(system, level)
        return level

    return measure


def _rounded(streams: float) -> int:
    return max(10, int(round(streams / 10)) * 10)


async def capacity(
    system: System, figures: dict[str, Any], quick: bool, repeats: int, levels: list[int], max_other: float
) -> None:
    """Streams started within one second, level by level: held while the median p99 is at most
    BOUND_MS, measured on while it is under CURVE_MS; then to the first miss (`to_the_first_miss`,
    not with `--quick`)."""
    measure = measurer(system, 150 if quick else TOKENS, repeats, max_other)
    for streams in levels:
        level = await measure(streams)
        figures["levels"].append(level)
        if level["p99_ms"]["median"] > CURVE_MS or level["incomplete"]:
            break
    figures |= await to_the_first_miss(measure, figures["levels"], bisect=not quick)
    print(
        f"  held with median p99 <= {BOUND_MS} ms: {figures['streams_held']} streams"
        f" (first missed: {figures['first_miss']})"
    )


async def spread_capacity(
    system: System, figures: dict[str, Any], quick: bool, levels: list[int], max_other: float
) -> None:
    """Streams started evenly over 10 s (`--quick`: 1.5 s, the first level only), one run a level,
    until a level is not held. The runs outlast the spread by 5 s (`--quick`: 2.5 s), so the steady
    part is 4 s (`--quick`: 1.5 s)."""
    spread = 1.5 if quick else 10.0
    tokens = int(RATE * (spread + (2.5 if quick else 5)))
    figures["spread"] = {"seconds": spread, "levels": []}
    print(f"  -- starts spread over {spread:g} s, runs of {tokens} tokens")
    measure = measurer(system, tokens, 1, max_other, spread)
    for streams in levels[:1] if quick else levels:
        level = await measure(streams)
        figures["spread"]["levels"].append(level)
        if not is_held(level):
            break
    figures["spread"] |= await to_the_first_miss(measure, figures["spread"]["levels"], bisect=not quick)
    print(
        f"  held with starts spread over {spread:g} s: {figures['spread']['streams_held']} streams"
        f" (first missed: {figures['spread']['first_miss']})"
    )
