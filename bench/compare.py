"""Side by side: tokentail, the naive gateway, Vercel's resumable-stream and the Durable Streams
reference server, in one run.

Each system (bench/systems.py) is a gateway process and a producer process on a private
redis-server, driven by the same load generator (raw asyncio sockets, harness.read_sse) with the
same workload: runs of 300 tokens at 50 tokens/s, tokens due every 50 ms joined into one event.
Measured for each, in this order: idle streams (on fresh processes), start -> first token, resume
of a backlog, one stream's fan-out, here; then the start rate and CPU per start (bench/starts.py),
streams held started in a burst and spread, with the latency curve and CPU per 1,000 tokens
(bench/levels.py), and a reconnect storm (bench/storm.py).
"""

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import harness
import httpx2
import starts
import storm
from levels import capacity, spread_capacity
from redis.asyncio import Redis
from systems import SYSTEMS, System, connections_of, redis_clients, rss_kb

from tokentail.redis_server import RedisServer


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
    counted = sum(1 for f in results[0] if system.is_token(f) and f.received > counting_from)
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
            frames = await harness.read_sse(system.port, path, system.is_token)
            times.append((frames[-1].received - begun) * 1000)
    return {"p50_ms": harness.percentile(times, 50), "p99_ms": harness.percentile(times, 99)}


async def resume_backlog(system: System, events: int, repeats: int) -> dict[str, float]:
    """A client resuming from the start of a stream `events` long: first and last event received."""
    async with httpx2.AsyncClient(base_url=system.url, timeout=harness.patience(120)) as client:
        path = await system.backlog(client, events)
        await asyncio.sleep(1)
    return await read_backlog(system, path, events, repeats)


async def read_backlog(system: System, path: str, events: int, repeats: int) -> dict[str, float]:
    """`repeats` clients, one at a time, reading the backlog at `path` from its start: the medians of
    their first and last token events, ms after the request."""
    delta = b"\nevent: %s\n" % system.delta
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


async def reconnect_storm(system: System, quick: bool) -> dict[str, Any] | None:
    """Clients of streaming runs (5 tokens/s), 10 per stream, away together for a while, then all
    back at once where they were (bench/storm.py). None for a system whose resume it cannot check."""
    if system.resume_by is None:
        return None
    sessions, clients, away = (5, 20, 0.5) if quick else (100, 1000, 2.0)
    async with httpx2.AsyncClient(base_url=system.url, timeout=harness.patience(30)) as client:
        paths = [await system.start_stream(client, tokens=100_000, rate=5) for _ in range(sessions)]
    by_offset = system.resume_by == "offset"
    return await storm.reconnect_storm(system.port, paths, clients, away, by_offset, warm=away)


async def compare(
    data_dir: str,
    quick: bool,
    repeats: int,
    levels: list[int],
    systems: list[str],
    max_other: float,
    aof: tuple[str, ...] = ("no",),
) -> dict[str, Any]:
    """Each system in turn on a private Redis. tokentail's (and tokentail-gateway's) runs with each of
    the `aof` modes (`--redis-aof`): with the first, measured whole, under its own name; with the
    others, its levels only, as "<name> (AOF <mode>)". The peers' Redis keeps no AOF: they promise
    nothing of a Redis restart."""
    results: dict[str, Any] = {}
    for name in systems:
        for index, mode in enumerate(aof if name.startswith("tokentail") else ("no",)):
            label = name if index == 0 else f"{name} (AOF {mode})"
            folder = Path(data_dir) / label.replace(" ", "-").strip("()")
            folder.mkdir()
            with redis_server(folder, mode) as redis:
                system = SYSTEMS[name](redis)
                system.name = label
                system.capacity_only |= index > 0
                began = time.monotonic()
                try:
                    await system.restart()
                    results[label] = await measure(system, quick, repeats, levels, max_other)
                finally:
                    system.stop()
                print(f"  ({label}: {time.monotonic() - began:.0f} s)")
    return results


def redis_server(folder: Path, aof: str) -> RedisServer:
    """A private redis-server with AOF `aof` (`no`, or its fsync policy: `everysec`, `always`)."""
    if aof == "no":
        return RedisServer(folder)
    return RedisServer(folder, appendonly=True, extra_args=("--appendfsync", aof))


async def measure(system: System, quick: bool, repeats: int, levels: list[int], max_other: float) -> dict[str, Any]:
    name = system.name
    figures: dict[str, Any] = {"levels": []}
    print(f"== {name}" + (" (its levels only)" if system.capacity_only else ""))
    if system.capacity_only:
        await capacity(system, figures, quick, repeats, levels, max_other)
        await spread_capacity(system, figures, quick, levels, max_other)
        return figures
    # First, on a fresh gateway process: a heap grown by the loads below would hide what streams cost.
    meter = harness.OtherWork(system.pids)
    idle = figures["idle"] = await idle_streams(system, 100 if quick else 5000)
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
    first = figures["first_event"] = await first_event_ms(system, 10 if quick else 100)
    first["other_cpu_share"] = meter.share()
    print(
        f"  start a run -> first token at a new client: p50 {first['p50_ms']:.1f} ms, p99 {first['p99_ms']:.1f} ms"
        f"  (other CPU {first['other_cpu_share']:.0%})"
    )
    backlog, meter = 1000 if quick else 10_000, harness.OtherWork(system.pids)
    resume = figures["resume"] = await resume_backlog(system, backlog, 2 if quick else 10)
    resume |= {"events": backlog, "other_cpu_share": meter.share()}
    print(
        f"  resume of {backlog} events: first {resume['first_byte_ms']:.1f} ms, last {resume['last_byte_ms']:.1f} ms"
        f"  (other CPU {resume['other_cpu_share']:.0%})"
    )
    figures["fan_out"] = await fan_out(system, 20 if quick else 100)
    per_event = " (per_event: Redis commands per event)" if system.uses_redis else ""
    print(f"  one stream, {20 if quick else 100} watchers{per_event}: {figures['fan_out']}")
    figures["starts"] = await starts.start_rate(system, quick, max_other)
    await capacity(system, figures, quick, repeats, levels, max_other)
    await spread_capacity(system, figures, quick, levels, max_other)
    meter = harness.OtherWork(system.pids)
    reconnects = figures["storm"] = await reconnect_storm(system, quick)
    if reconnects is not None:
        reconnects["other_cpu_share"] = meter.share()
        print(f"  reconnect storm: {storm.report(reconnects)}  (other CPU {reconnects['other_cpu_share']:.0%})")
    return figures
