"""The worker's per-token path in one process: its CPU per token, and Redis's per appended event.

    .venv/bin/python bench/worker_path.py                 # 400 runs: chain, then null, in turns
    .venv/bin/python bench/worker_path.py --runs 200 --rounds 3 --modes chain

N runs (started over one second) of the offline model's 300 tokens at 50 tokens/s, each streamed
through the worker's own chain (`ScriptedProvider` -> `stream_with_retries` -> the agent loop's model
turn -> `RunContext.delta` -> `EventWriter` -> `AppendTicks`, on a private redis-server with AOF
`everysec`), without arq, lease renewals or the run's start and end: what each token and each append
costs, in turns with `null` (the same chain, each token handed to a writer that keeps nothing), so the
difference is the writer's and the ticks' share. CPU from the process's own clock and Redis's `INFO
cpu`, over the steady part (every run streaming). Figures are printed, never asserted: a tool to find
where a token's time goes (`--profile` writes a cProfile of the steady part), not a result to quote.
"""

import argparse
import asyncio
import cProfile
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvloop
from redis.asyncio import Redis

from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.redis_server import RedisServer
from tokentail.shared.plumbing.gc_tuning import tune_for_server
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.params import RunParams
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord
from tokentail.worker.providers.base import Message, ModelRequest
from tokentail.worker.providers.scripted import ScriptedProvider
from tokentail.worker.run.agent_loop import _model_turn, _Progress
from tokentail.worker.run.context import RunContext
from tokentail.worker.run.retry import RetryPolicy, stream_with_retries
from tokentail.worker.writes.appends import AppendTicks
from tokentail.worker.writes.run_writes import RunWrites
from tokentail.worker.writes.writer import EventWriter

TOKENS, RATE = 300, 50.0
STEADY = 3.0  # seconds measured, with every run streaming


class Writes(SessionWrites, RunWrites):
    pass


async def redis_cpu(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def _null(text: str, *, agent: str | None = None) -> None:
    pass


async def level(redis: Redis, settings: Settings, runs: int, mode: str, profile: Path | None) -> dict[str, float]:
    writes, ticks = Writes(redis, settings), AppendTicks(redis, settings)
    submitted = [0, 0]  # round trips, checked calls
    submit = ticks._round_trips.submit
    checked = {ticks._checked.sha, ticks._checked.source}

    def counted(commands: Any, slots: Any = None) -> Any:
        submitted[0] += 1
        submitted[1] += sum(command[1] in checked for command in commands)
        return submit(commands, slots)

    ticks._round_trips.submit = counted  # type: ignore[method-assign]
    contexts = []
    for _ in range(runs):
        session = SessionRecord(session_id=new_session_id(), created_at=time.time())
        run = RunRecord(run_id=new_run_id(), input="benchmark", model="scripted", queued_at=time.time())
        await writes.queue_run(session.session_id, run, create=session)
        started = await writes.start_run(session.session_id, run.run_id, run.run_id)
        assert started is not None
        context = RunContext(EventWriter(started.lease, ticks, 1 << 30), session.session_id, started.run, [])
        if mode == "null":
            context.delta = _null  # type: ignore[method-assign]
        contexts.append(context)
    params = RunParams(tokens=TOKENS, tokens_per_second=RATE, due_stamps=True)
    request = ModelRequest("", [Message("user", "benchmark")], params=params)

    async def on_retry(error: Exception, delay: float) -> None:  # never called: the model does not fail
        pass

    async def one(context: RunContext) -> None:
        chunks = stream_with_retries(ScriptedProvider(), replace(request), RetryPolicy(), on_retry)
        await _model_turn(context, context.this_attempt.writer.lease, chunks, "", _Progress())
        await context.this_attempt.writer.flush()

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    for number, context in enumerate(contexts):
        loop.call_later(number / runs, lambda c=context: tasks.append(asyncio.ensure_future(one(c))))
    await asyncio.sleep(1.5)

    def appended() -> int:
        return sum(context.this_attempt.writer.events_appended for context in contexts)

    profiler = cProfile.Profile() if profile else None
    trips, checks = submitted
    events, cpu, redis_before, began = appended(), time.process_time(), await redis_cpu(redis), time.monotonic()
    if profiler:
        profiler.enable()
    await asyncio.sleep(STEADY)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    events, cpu, trips = appended() - events, time.process_time() - cpu, submitted[0] - trips
    checks = submitted[1] - checks
    redis_used, seconds = await redis_cpu(redis) - redis_before, time.monotonic() - began
    await asyncio.gather(*tasks)
    tokens = runs * RATE * seconds
    return {
        "worker_us_per_token": 1e6 * cpu / tokens,
        "redis_us_per_event": 1e6 * redis_used / max(1, events),
        "events_per_token": events / tokens,
        "round_trips_per_s": trips / seconds,
        "events_per_round_trip": events / max(1, trips),
        "checked_calls_per_s": checks / seconds,
    }


async def main(runs: int, rounds: int, modes: list[str], profile: Path | None) -> None:
    figures: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder), appendonly=True) as server:
        settings = Settings(redis_url=server.url, key_prefix="wp")
        redis = Redis.from_url(server.url)
        for number in range(rounds):
            for mode in modes if number % 2 == 0 else reversed(modes):
                await redis.flushall()
                measured = await level(redis, settings, runs, mode, profile if mode == modes[0] else None)
                figures[mode].append(measured)
                cells = "  ".join(f"{name} {value:.2f}" for name, value in measured.items())
                print(f"  round {number + 1} {mode:6} {cells}", flush=True)
        await redis.aclose()
    for mode, steps in figures.items():
        medians = {name: statistics.median(step[name] for step in steps) for name in steps[0]}
        print(f"{mode:6} median  " + "  ".join(f"{name} {value:.2f}" for name, value in medians.items()))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="chain,null")
    parser.add_argument("--profile", type=Path, help="a cProfile of the first mode's steady part, to this file")
    args = parser.parse_args()
    tune_for_server()  # as the worker does
    uvloop.run(main(args.runs, args.rounds, args.modes.split(","), args.profile))


if __name__ == "__main__":
    cli()
