"""A light producer for tokentail: the product's own append path without the agent machinery.

    python bench/light_producer.py <port>   POST /start?tokens=&rate= -> {"session_id"}  (TOKENTAIL_* settings)

The benchmark uses it to measure the gateway when the worker, not the gateway, is what a 2-core box
runs out of first: each stream is a session and a run recorded by the store's own scripts, its
lease taken by this process, then the same tokens as the scripted model (the first at once, then
those due every 50 ms joined into one `message.delta`) appended through `SessionStore.append` over
the worker's pipelines (shared/scripts/pipeline.py), then `run.completed`. No arq worker runs: the run's
job waits in the queue, unclaimed.
"""

import asyncio
import json
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
from tokentail.shared.events import RunCompleted
from tokentail.shared.gc_tuning import tune_for_server
from tokentail.shared.keys import Keys
from tokentail.shared.records import RunRecord, SessionRecord
from tokentail.shared.scripts.contract import Topology
from tokentail.shared.scripts.pipeline import ScriptPipeline, append_pipeline
from tokentail.shared.scripts.runs import AppendEvents, RenewLease
from tokentail.shared.settings import Settings
from tokentail.worker.run_writes import RunLease, RunWrites

FLUSH_SECONDS = 0.05
LEASE = "bench-light-producer"


async def begin(gateway: SessionWrites, runs: RunWrites) -> tuple[str, str]:
    """A session with a run whose lease this process holds."""
    session = SessionRecord(session_id=new_session_id(), created_at=time.time())
    run = RunRecord(run_id=new_run_id(), input="benchmark", model="scripted", queued_at=time.time())
    await gateway.queue_run(session.session_id, run, create=session)
    await runs.start_run(session.session_id, run.run_id, run.run_id, token=LEASE)
    return session.session_id, run.run_id


async def produce(runs: RunWrites, session_id: str, run_id: str, tokens: int, rate: float) -> None:
    started, sent = time.monotonic(), 0
    due_ms = time.time() * 1000  # token i is due i / rate after it, and is that time (bench/systems.py, CLOCK)
    while sent < tokens:
        due = min(tokens, int((time.monotonic() - started) * rate) + 1)
        if due > sent:
            text = "".join(f"{due_ms + (i * 1000 / rate if rate else 0):.1f} " for i in range(sent, due))
            delta = json.dumps({"run_id": run_id, "text": text})
            await RunLease(runs, session_id, run_id, LEASE).append([("message.delta", delta)])
            sent = due
        await asyncio.sleep(FLUSH_SECONDS)
    await RunLease(runs, session_id, run_id, LEASE).append([], ending=RunCompleted(run_id=run_id, output="", usage={}))


async def main(port: int) -> None:
    settings = Settings()
    redis = Redis.from_url(str(settings.redis_url))
    topology = Topology.of(settings)
    pipelines = {
        AppendEvents: append_pipeline(redis, topology, Keys(settings.key_prefix)),
        RenewLease: ScriptPipeline(redis, RenewLease.lua_source(topology)),
    }
    gateway, runs = SessionWrites(redis, settings), RunWrites(redis, settings, batched=pipelines)

    async def start(query: dict[str, str]) -> tuple[dict[str, str], Coroutine[Any, Any, None]]:
        session_id, run_id = await begin(gateway, runs)
        return {"session_id": session_id}, produce(runs, session_id, run_id, int(query["tokens"]), float(query["rate"]))

    await serve_starts(port, start)


if __name__ == "__main__":
    tune_for_server()  # as the worker does
    uvloop.run(main(int(sys.argv[1])))
