"""What taking a steer in costs Redis, by how many the run took in before it, in one run.

    .venv/bin/python bench/steer_cost.py                    # 32 steers of 6,250 characters (the bounds' 200,000)
    .venv/bin/python bench/steer_cost.py --steers 32 --chars 10

On a private redis-server: one run is started as a worker starts it, then takes in its steers one at a
time as its agent would (`apply_steers.lua`, through RunLease.apply_steers), each sent just before
(`steer.lua`). Redis's own time for each take is read from its SLOWLOG (every command logged). Figures:
the median of the first four takes and of the last four, and their ratio; the claim (docs/steering.md)
is that the ratio stays near 1, since a run's record keeps its steers' ids, not their texts. Printed,
never asserted.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time

from harness import ROOT
from redis.asyncio import Redis

sys.path.insert(0, str(ROOT))
from tokentail.gateway.access.ids import new_run_id, new_session_id  # noqa: E402
from tokentail.gateway.commands.writes import SessionWrites  # noqa: E402
from tokentail.redis_server import RedisServer  # noqa: E402
from tokentail.shared.plumbing.settings import Settings  # noqa: E402
from tokentail.shared.vocabulary.records import STEERS_STEP, RunRecord, SessionRecord  # noqa: E402
from tokentail.worker.writes.run_writes import RunLease, RunWrites  # noqa: E402


async def take_costs(redis: Redis, settings: Settings, steers: int, chars: int) -> list[int]:
    """Redis's time, in µs, of each take of one steer of `chars` characters, in order."""
    gateway, runs = SessionWrites(redis, settings), RunWrites(redis, settings)
    session = SessionRecord(session_id=new_session_id(), created_at=time.time(), model="scripted")
    run = RunRecord(run_id=new_run_id(), input="steer me", model="scripted")
    await gateway.queue_run(session.session_id, run, create=session)
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="t")
    assert started is not None
    lease = RunLease(runs, session.session_id, run.run_id, "t")
    lease.journal.written = started.run.started_seq or 0
    costs = []
    for n in range(steers):
        await gateway.steer(session.session_id, f"st_{n}", chr(ord("a") + n % 26) * chars)
        await redis.slowlog_reset()
        await lease.apply_steers(f"{STEERS_STEP}#{n}", n)
        logged = await redis.slowlog_get(16)
        scripts = [entry for entry in logged if _command(entry).upper().startswith((b"EVALSHA", b"EVAL "))]
        costs.append(max(entry["duration"] for entry in scripts))
    return costs


def _command(entry: dict[str, object]) -> bytes:
    command = entry["command"]
    return command if isinstance(command, bytes) else str(command).encode()


async def main(steers: int, chars: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(data).start()
        try:
            redis = Redis.from_url(server.url)
            await redis.config_set("slowlog-log-slower-than", 0)
            settings = Settings(redis_url=server.url, max_steers_per_run=steers, max_steer_chars_per_run=steers * chars)
            costs = await take_costs(redis, settings, steers, chars)
            await redis.aclose()
        finally:
            server.stop()
    first, last = statistics.median(costs[:4]), statistics.median(costs[-4:])
    print(f"== taking a steer in: {steers} steers of {chars:,} characters into one run (Redis's time, SLOWLOG)")
    print(f"   first four takes: median {first:.0f} µs; last four: median {last:.0f} µs; worst {max(costs)} µs")
    print(f"   last / first: {last / first:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steers", type=int, default=32, help="steers one run takes in (32)")
    parser.add_argument("--chars", type=int, default=6250, help="characters of each (6,250)")
    args = parser.parse_args()
    asyncio.run(main(args.steers, args.chars))
