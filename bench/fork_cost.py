"""What a fork costs (issue 86, time travel), by how many events it copies, in one run.

    .venv/bin/python bench/fork_cost.py                        # sessions of 100, 1,000 and 10,000 events, 20 forks each
    .venv/bin/python bench/fork_cost.py --events 100 -n 3      # a small run, to check the script itself

On a private redis-server, one `tokentail gateway` process and (for the continuations) one worker
process, the offline scripted model. For each size N, a session is written as a worker writes it
(bench/reopen.py): N / 100 turns, each a run with 97 deltas of four words (100 events a turn), then
one more. It is forked with `POST /v1/sessions/{id}/fork`:

- at event N (the end of the turn before the last: no run going there), `-n` times, one at a time,
  the gateway alone (no worker yet, so Redis runs nothing else): the bytes each fork copies (what the
  gateway charges its tenant's hour, `copied_bytes` in gateway/commands/branching.py, read from that
  counter), the fork's keys' memory in Redis (MEMORY USAGE, exact), Redis's time per fork from `INFO
  commandstats` before and after (bench/commandstats.py's reading: its CPU, the scripts' time, the
  source read's MULTI, every command's), and the request's time at the client (p50, p95);
- inside the last run, two deltas into it (event N + 4), with `continue: true`, the worker started
  now: the run goes on in the fork (`run.started`, reason "fork"). Start to first token: from sending
  the fork request to the first `message.delta` after the fork's event at an SSE client of the fork's
  stream (opened once the fork is made, from `last_event_id` = the fork's event, read to the run's
  end); beside it, the same for a new session (`POST /v1/sessions` with input, then its stream), the
  baseline, `-n` of each in turns (each first in every other round). Every answer is the scripted
  model's 20 tokens at 50 a second.

Figures are printed, never asserted; the ratio compares two things measured in this same command.
"""

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import commandstats
import harness
import httpx2
from harness import Stack, percentile, print_table, read_sse
from redis.asyncio import Redis
from reopen import write_session

from tokentail.shared.plumbing.settings import Settings

DELTAS = 97  # a turn's deltas: with its run.queued, run.started and run.completed, 100 events a turn
PARAMS = {"tokens": 20, "tokens_per_second": 50}  # each run's answer: the source's, a continuation's, a new one's
INTO_THE_RUN = 2  # a fork inside the last run: this many of its deltas after its `run.started`
MAX_EVENTS = 100_000  # the stream's bound here: no session trimmed


@dataclass
class Figures:
    """One session size's figures."""

    events: int
    inside: int  # the event inside the last run its continuations fork at
    copied: float = 0.0  # bytes per fork, as charged
    memory: list[int] = field(default_factory=list)  # each fork's keys in Redis, bytes
    redis: commandstats.Stats = field(default_factory=dict)  # over all the forks at a turn's end
    end_ms: list[float] = field(default_factory=list)  # POST .../fork at a turn's end
    going_ms: list[float] = field(default_factory=list)  # POST .../fork inside its last run, continue: true
    fork_first_ms: list[float] = field(default_factory=list)  # start to first token, a fork's continuation
    new_first_ms: list[float] = field(default_factory=list)  # start to first token, a new session
    other: list[float] = field(default_factory=list)  # other work on the box in each phase, share of a core


async def fork(client: httpx2.AsyncClient, session_id: str, body: dict[str, Any]) -> tuple[str, float]:
    """The fork's id, and the request's time (ms) at the client."""
    began = time.perf_counter()
    response = await client.post(f"/v1/sessions/{session_id}/fork", json=body)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 201:
        raise RuntimeError(f"fork {body}: {response.status_code} {response.text[:300]}")
    return str(response.json()["session_id"]), elapsed


async def copied_so_far(redis: Redis, prefix: str) -> int:
    """The bytes every tenant's forks copied, as their hours' counters hold them (gateway/access/limits.py)."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:tenant:*:fork-bytes:*")]
    return sum(int(value) for value in await redis.mget(keys) if value) if keys else 0


async def memory_of(redis: Redis, prefix: str, session_id: str) -> int:
    """What a session's keys take in Redis, in bytes (MEMORY USAGE of each, every entry counted)."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:{{{session_id}}}:*")]
    return sum([await redis.memory_usage(key, samples=0) or 0 for key in keys])


async def copies(stack: Stack, redis: Redis, session_id: str, end: int, forks: int, figures: Figures) -> None:
    """`forks` forks at event `end` (a turn's end), one at a time, the gateway alone on the Redis."""
    async with httpx2.AsyncClient(base_url=stack.url, timeout=harness.patience(60)) as client:
        for _ in range(2):  # warm: scripts loaded, connections open
            await fork(client, session_id, {"at": end})
        spent = await copied_so_far(redis, stack.prefix)
        before = await commandstats._stats([stack.redis])
        made = []
        for _ in range(forks):
            fork_id, elapsed = await fork(client, session_id, {"at": end})
            made.append(fork_id)
            figures.end_ms.append(elapsed)
        figures.redis = commandstats._between(before, await commandstats._stats([stack.redis]))
    figures.copied = (await copied_so_far(redis, stack.prefix) - spent) / forks
    figures.memory = [await memory_of(redis, stack.prefix, fork_id) for fork_id in made]


async def first_token(port: int, path: str, after: int, sent: float) -> float:
    """Read a stream to its end: ms from `sent` to its first `message.delta` after event `after`."""
    frames = await asyncio.wait_for(read_sse(port, path), harness.patience(30))
    deltas = [frame for frame in frames if frame.event == b"message.delta" and frame.id > after]
    if not deltas or frames[-1].event != b"run.completed":
        raise RuntimeError(f"{path}: no token, or no end: {[(frame.id, frame.event) for frame in frames][-5:]}")
    return (deltas[0].received - sent) * 1000


async def first_tokens(stack: Stack, session_id: str, inside: int, rounds: int, figures: Figures) -> None:
    """Start to first token of a fork inside the last run that goes on, and of a new session, in turns."""
    async with httpx2.AsyncClient(base_url=stack.url, timeout=harness.patience(60)) as client:
        await harness.create(client, **PARAMS)  # warm: the worker's first run
        for kind in harness.in_turns(rounds, "fork", "new"):
            await asyncio.sleep(0.1)
            sent = time.time()
            if kind == "new":
                created = await harness.create(client, **PARAMS)
                path = f"/v1/sessions/{created['session_id']}/events"
                figures.new_first_ms.append(await first_token(stack.port, path, 0, sent))
                continue
            fork_id, elapsed = await fork(client, session_id, {"at": inside, "continue": True})
            figures.going_ms.append(elapsed)
            path = f"/v1/sessions/{fork_id}/events?last_event_id={inside}"
            figures.fork_first_ms.append(await first_token(stack.port, path, inside, sent))


async def measure(stack: Stack, events: int, forks: int) -> Figures:
    stack.start(with_worker=False)  # a fresh key prefix; the session is written here, as a worker would
    settings = Settings(redis_url=stack.redis.url, key_prefix=stack.prefix, stream_maxlen=MAX_EVENTS)
    turns = max(1, round(events / (DELTAS + 3))) + 1  # and the last, which the continuations fork inside
    session_id, last_started = await write_session(settings, turns, DELTAS, PARAMS)
    # The turn before the last ends two events before the last run's start (its run.queued between).
    figures = Figures(last_started - 2, last_started + INTO_THE_RUN)
    redis = Redis.from_url(stack.redis.url)
    try:
        other = harness.OtherWork(stack.pids)
        await copies(stack, redis, session_id, figures.events, forks, figures)
        figures.other.append(other.share())
        stack.start_worker()
        other = harness.OtherWork(stack.pids)
        await first_tokens(stack, session_id, figures.inside, forks, figures)
        figures.other.append(other.share())
    finally:
        await redis.aclose()
    return figures


def report(sizes: list[Figures], forks: int) -> None:
    print(f"\nA fork at a turn's end, {forks} forks each, one at a time; per fork:")
    rows = [
        ("events copied", "bytes copied", "fork's Redis memory", "Redis CPU µs", "scripts' µs", "source read µs")
        + ("POST p50 ms", "p95 ms", "other work")
    ]
    for size in sizes:
        usec = {name: us / forks for name, (_, us) in size.redis.items()}
        scripts = sum(us for name, us in usec.items() if name in ("evalsha", "eval"))
        reads = usec.get("exec", 0.0)  # the one MULTI of a fork: SessionStore.fork_source's
        rows.append(
            (f"{size.events:,}", f"{size.copied:,.0f}", f"{percentile(size.memory, 50):,}")
            + (f"{usec['(cpu)']:,.0f}", f"{scripts:,.0f}", f"{reads:,.0f}")
            + (f"{percentile(size.end_ms, 50):.1f}", f"{percentile(size.end_ms, 95):.1f}", f"{size.other[0]:.0%}")
        )
    print_table(rows)
    print("\nStart to first token (ms): a fork inside the last run that goes on, and a new session, in turns:")
    rows = [("events copied", "fork p50", "p95", "new session p50", "p95", "fork / new (p50)", "POST fork p50 ms")]
    rows[0] += ("other work",)
    for size in sizes:
        fork_p50, new_p50 = percentile(size.fork_first_ms, 50), percentile(size.new_first_ms, 50)
        rows.append(
            (f"{size.inside:,}", f"{fork_p50:.1f}", f"{percentile(size.fork_first_ms, 95):.1f}")
            + (f"{new_p50:.1f}", f"{percentile(size.new_first_ms, 95):.1f}", f"{fork_p50 / new_p50:.2f}x")
            + (f"{percentile(size.going_ms, 50):.1f}", f"{size.other[1]:.0%}")
        )
    print_table(rows)


def detail(sizes: list[Figures], forks: int) -> None:
    """Every command Redis ran per fork at a turn's end, by size (bench/commandstats.py's report)."""
    for size in sizes:
        print(f"\n{size.events:,} events:")
        commandstats.report({"Redis": size.redis}, forks, "fork")


async def main(sizes: list[int], forks: int) -> None:
    slowness = harness.calibrate()
    print(f"== calibration: this box takes {slowness:.2f}x the reference box's time; waits scale with it")
    print(f"load average at the start: {' '.join(f'{load:.2f}' for load in os.getloadavg())} ({os.cpu_count()} cores)")
    measured = []
    with tempfile.TemporaryDirectory() as data_dir:
        stack = Stack(data_dir, TOKENTAIL_STREAM_MAXLEN=str(MAX_EVENTS), TOKENTAIL_FORK_BYTES_PER_HOUR=str(1 << 40))
        try:
            for events in sizes:
                began = time.monotonic()
                measured.append(await measure(stack, events, forks))
                print(f"{measured[-1].events:,} events: measured in {time.monotonic() - began:.0f} s")
        finally:
            stack.close()
    detail(measured, forks)
    report(measured, forks)
    print(f"\nload average at the end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[100, 1000, 10_000], help="the sessions' sizes")
    parser.add_argument("-n", "--forks", type=int, default=20, help="forks of each kind, and new sessions, per size")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.forks))
