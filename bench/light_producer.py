"""A light producer for tokentail: the product's own append path without the agent machinery.

    python bench/light_producer.py <port>   POST /start?tokens=&rate= -> {"session_id"}  (TOKENTAIL_* settings)

The benchmark uses it to measure the gateway when the worker, not the gateway, is what a 2-core box
runs out of first: each stream is a session and a run recorded by the store's own scripts, its
lease taken by this process, then the same tokens as the scripted model (the first at once, then
those due every 50 ms joined into one `message.delta`) appended through an `EventWriter` on the
worker's tick path (worker/writes/appends.py), then `run.completed`. No arq worker runs: the run's job waits
in the queue, unclaimed.
"""

import asyncio
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvloop
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))

from control import serve_starts  # noqa: E402

from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.shared.plumbing.gc_tuning import tune_for_server
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.events import RunCompleted
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord
from tokentail.worker.writes.appends import AppendTicks
from tokentail.worker.writes.run_writes import RunLease, RunWrites
from tokentail.worker.writes.writer import EventWriter

FLUSH_SECONDS = 0.05
LEASE = "bench-light-producer"


async def begin(gateway: SessionWrites, runs: RunWrites) -> tuple[str, str]:
    """A session with a run whose lease this process holds."""
    session = SessionRecord(session_id=new_session_id(), created_at=time.time())
    run = RunRecord(run_id=new_run_id(), input="benchmark", model="scripted", queued_at=time.time())
    await gateway.queue_run(session.session_id, run, create=session)
    await runs.start_run(session.session_id, run.run_id, run.run_id, token=LEASE)
    return session.session_id, run.run_id


async def produce(ticks: AppendTicks, lease: RunLease, tokens: int, rate: float) -> None:
    writer = EventWriter(lease, ticks, max_output_chars=1 << 30)
    started, sent = time.monotonic(), 0
    due_ms = time.time() * 1000  # token i is due i / rate after it, and is that time (bench/systems.py, CLOCK)
    while sent < tokens:
        due = min(tokens, int((time.monotonic() - started) * rate) + 1)
        if due > sent:
            await writer.delta("".join(f"{due_ms + (i * 1000 / rate if rate else 0):.1f} " for i in range(sent, due)))
            sent = due
        await asyncio.sleep(FLUSH_SECONDS)
    await writer.flush()
    await writer.finish(RunCompleted(run_id=lease.run_id, output="", usage={}))


async def main(port: int) -> None:
    settings = Settings()
    redis = Redis.from_url(str(settings.redis_url))
    gateway, runs, ticks = SessionWrites(redis, settings), RunWrites(redis, settings), AppendTicks(redis, settings)

    async def start(query: dict[str, str]) -> tuple[dict[str, str], Coroutine[Any, Any, None]]:
        session_id, run_id = await begin(gateway, runs)
        lease = RunLease(runs, session_id, run_id, LEASE)
        lease.journal.written = 2  # run.queued, run.started
        return {"session_id": session_id}, produce(ticks, lease, int(query["tokens"]), float(query["rate"]))

    await serve_starts(port, start)


if __name__ == "__main__":
    tune_for_server()  # as the worker does
    uvloop.run(main(int(sys.argv[1])))
