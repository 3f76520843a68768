"""Reopening a long session: every delta (`?catch_up=events`) against the compacted catch-up
(`?catch_up=snapshot`), in one run, on one gateway process and a private redis-server.

    .venv/bin/python bench/reopen.py                     # 1,000 turns of 60 deltas, 5 reopens each way
    .venv/bin/python bench/reopen.py --turns 100 -r 2    # a small run, to check the script itself

The session is written as a worker writes it (the run scripts, through `SessionWrites` and `RunWrites`): each turn a
run queued and started, its answer in deltas of about four words, then `run.completed`. Figures are
bytes on the wire and the time from the request to the last byte (the gateway ends the stream once
the session is idle), then the events tokentail's Python client yields and its time to the last,
printed, never asserted.
"""

import argparse
import asyncio
import tempfile
import time
from typing import Any

import httpx2
from harness import Stack, percentile
from redis.asyncio import Redis

from tokentail.client import AsyncTokentail, CatchUp
from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.events import MessageDelta, RunCompleted
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord
from tokentail.worker.writes.run_writes import RunLease, RunWrites

WORDS = "the quick brown fox jumps over a lazy dog while it streams ".split()


async def write_session(
    settings: Settings, turns: int, deltas: int, params: dict[str, Any] | None = None
) -> tuple[str, int]:
    """A session of `turns` runs (each with `params`, if given) of `deltas` deltas each, written as a
    worker writes it: its id, and the id of its last run's `run.started`."""
    redis = Redis.from_url(str(settings.redis_url))
    gateway, runs = SessionWrites(redis, settings), RunWrites(redis, settings)
    session = SessionRecord(session_id=new_session_id(), created_at=time.time(), model="scripted")
    last_started = 0
    try:
        for number in range(turns):
            run = RunRecord(run_id=new_run_id(), input=f"question {number}", model="scripted", params=params or {})
            await gateway.queue_run(session.session_id, run, create=session if number == 0 else None)
            started = await runs.start_run(session.session_id, run.run_id, run.run_id, token=f"t{number}")
            assert started is not None
            last_started = started.run.started_seq or 0
            lease = RunLease(runs, session.session_id, run.run_id, f"t{number}")
            texts = [" ".join(WORDS[(i + k) % len(WORDS)] for k in range(4)) + " " for i in range(deltas)]
            events = [("message.delta", MessageDelta(run_id=run.run_id, text=text).model_dump_json()) for text in texts]
            for start in range(0, len(events), 500):
                await lease.append(events[start : start + 500])
            ending = RunCompleted(run_id=run.run_id, output="".join(texts), usage={"output_tokens": 4 * deltas})
            await lease.append([], ending=ending)
    finally:
        await redis.aclose()
    return session.session_id, last_started


async def reopen(url: str, catch_up: str) -> tuple[int, float, float]:
    """Bytes, seconds to the first byte and seconds to the last, of one reopen from the start."""
    began = time.perf_counter()
    received, first = 0, 0.0
    async with httpx2.AsyncClient(timeout=120) as client:
        async with client.stream("GET", url, params={"catch_up": catch_up}) as response:
            assert response.status_code == 200, response.status_code
            async for chunk in response.aiter_raw():
                if not received:
                    first = time.perf_counter() - began
                received += len(chunk)
    return received, first, time.perf_counter() - began


async def reopen_with_client(base_url: str, session_id: str, catch_up: CatchUp) -> tuple[int, float]:
    """Events the Python client yields, and seconds until its last: what a program reopening sees."""
    began = time.perf_counter()
    async with AsyncTokentail(base_url) as client:
        count = sum([1 async for _ in client.stream(session_id, catch_up=catch_up)])
    return count, time.perf_counter() - began


async def main(turns: int, deltas: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        # The stream must keep the whole session: no trimming in this measurement.
        stack = Stack(data_dir, TOKENTAIL_STREAM_MAXLEN=str(turns * (deltas + 3) + 1000))
        try:
            stack.start(with_worker=False)  # the session is written here, as a worker would
            settings = Settings(
                redis_url=stack.redis.url, key_prefix=stack.prefix, stream_maxlen=turns * (deltas + 3) + 1000
            )
            began = time.perf_counter()
            session_id, _ = await write_session(settings, turns, deltas)
            events = turns * (deltas + 3)
            print(f"session: {turns} turns, {events:,} events, written in {time.perf_counter() - began:.1f} s")
            url = f"{stack.url}/v1/sessions/{session_id}/events"
            results: dict[str, list[tuple[int, float, float]]] = {"events": [], "snapshot": []}
            for _ in range(repeats):  # interleaved, so both ways see the same machine
                for catch_up in results:
                    results[catch_up].append(await reopen(url, catch_up))
            print(f"{'catch_up':<10} {'bytes':>12} {'first byte p50':>15} {'last byte p50':>14} {'max':>8}")
            for catch_up, runs in results.items():
                lasts = [last for _, _, last in runs]
                print(
                    f"{catch_up:<10} {runs[0][0]:>12,} {percentile([f for _, f, _ in runs], 50):>13.3f} s"
                    f" {percentile(lasts, 50):>12.3f} s {max(lasts):>6.3f} s"
                )
            by_client: dict[CatchUp, list[tuple[int, float]]] = {"events": [], "snapshot": []}
            for _ in range(repeats):
                for catch_up in by_client:
                    by_client[catch_up].append(await reopen_with_client(stack.url, session_id, catch_up))
            print(f"{'Python client':<14} {'events yielded':>15} {'to the last p50':>16}")
            for catch_up, measured in by_client.items():
                print(f"{catch_up:<14} {measured[0][0]:>15,} {percentile([t for _, t in measured], 50):>14.3f} s")
            full, compact = results["events"], results["snapshot"]
            to_last = percentile([r[2] for r in compact], 50) / percentile([r[2] for r in full], 50)
            client_to_last = percentile([t for _, t in by_client["snapshot"]], 50) / percentile(
                [t for _, t in by_client["events"]], 50
            )
            print(
                f"snapshot / events: bytes {compact[0][0] / full[0][0]:.3f}, time to the last byte {to_last:.3f},"
                f" Python client's time to its last event {client_to_last:.3f}"
            )
        finally:
            stack.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--deltas", type=int, default=60, help="deltas per turn")
    parser.add_argument("-r", "--repeats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.deltas, args.repeats))
