"""Reading a session back from the archive (PostgreSQL) against reading it from Redis, in one run.

    .venv/bin/python bench/archive.py                 # a 10,000-event session, 5 reads each way
    .venv/bin/python bench/archive.py --events 2000 -r 2

One gateway process on a private redis-server and a private PostgreSQL (Debian's binaries, as the
tests start them: tests/servers/postgres_server.py). The session is written as a worker writes it, read
from Redis (the baseline), then archived (worker/process/archiver.py) with a 2 s hot retention; once Redis
forgot it, it is read from the archive. Figures: the session's Redis memory (MEMORY USAGE of its
keys) while hot and after the hot retention, and the time from the request to the first and to the
last event of a read from the start. Printed, never asserted.
"""

import argparse
import asyncio
import sys
import tempfile
import time

import httpx2
from harness import ROOT, Stack, percentile
from redis.asyncio import Redis

sys.path.insert(0, str(ROOT))  # the tests' PostgreSQL helper
from tests.servers.postgres_server import PostgresServer  # noqa: E402
from tokentail.gateway.access.ids import new_run_id, new_session_id  # noqa: E402
from tokentail.gateway.commands.writes import SessionWrites  # noqa: E402
from tokentail.shared.plumbing.settings import Settings  # noqa: E402
from tokentail.shared.store.archive import Archive, migrate  # noqa: E402
from tokentail.shared.vocabulary.events import MessageDelta, RunCompleted  # noqa: E402
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord  # noqa: E402
from tokentail.worker.process.archiver import Archiver  # noqa: E402
from tokentail.worker.writes.run_writes import (
    RunLease,  # noqa: E402
    RunWrites,  # noqa: E402
)

DELTAS_PER_TURN = 100


async def write_session(redis: Redis, settings: Settings, events: int) -> str:
    gateway, runs = SessionWrites(redis, settings), RunWrites(redis, settings)
    session = SessionRecord(session_id=new_session_id(), created_at=time.time(), model="scripted")
    for number in range(max(1, events // (DELTAS_PER_TURN + 3))):
        run = RunRecord(run_id=new_run_id(), input=f"question {number}", model="scripted")
        await gateway.queue_run(session.session_id, run, create=session if number == 0 else None)
        assert await runs.start_run(session.session_id, run.run_id, run.run_id, token="t") is not None
        lease = RunLease(runs, session.session_id, run.run_id, "t")
        deltas = [MessageDelta(run_id=run.run_id, text=f"word{i} ").model_dump_json() for i in range(DELTAS_PER_TURN)]
        await lease.append([("message.delta", delta) for delta in deltas])
        await lease.append([], ending=RunCompleted(run_id=run.run_id, output="...", usage={}))
    return session.session_id


async def memory(redis: Redis, settings: Settings, session_id: str) -> tuple[int, int]:
    """Keys and bytes (MEMORY USAGE) the session holds in Redis."""
    keys = [key async for key in redis.scan_iter(match=f"{settings.key_prefix}:{{{session_id}}}*")]
    return len(keys), sum([await redis.memory_usage(key) or 0 for key in keys])


async def read(url: str) -> tuple[int, float, float]:
    """Events, seconds to the first and to the last of one read from the start."""
    began, first, count = time.perf_counter(), 0.0, 0
    async with httpx2.AsyncClient(timeout=120) as client, client.stream("GET", url) as response:
        assert response.status_code == 200, response.status_code
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                count += 1
                first = first or time.perf_counter() - began
    return count, first, time.perf_counter() - began


async def reads(url: str, repeats: int) -> list[tuple[int, float, float]]:
    return [await read(url) for _ in range(repeats)]


def show(label: str, measured: list[tuple[int, float, float]]) -> tuple[float, float]:
    first = percentile([m[1] for m in measured], 50)
    last = percentile([m[2] for m in measured], 50)
    print(f"{label:<24} {measured[0][0]:>8,} events  first {first * 1000:>7.1f} ms  last {last * 1000:>7.1f} ms")
    return first, last


async def main(events: int, repeats: int) -> None:
    postgres = PostgresServer().start()
    with tempfile.TemporaryDirectory() as data_dir:
        stack = Stack(data_dir, TOKENTAIL_ARCHIVE_URL=postgres.url, TOKENTAIL_STREAM_MAXLEN="100000")
        archive = Archive(postgres.url, "")
        try:
            await migrate(postgres.url)
            stack.start(with_worker=False)
            settings = Settings(
                redis_url=stack.redis.url,
                key_prefix=stack.prefix,
                stream_maxlen=100_000,
                archive_url=postgres.url,
                session_ttl_seconds=2,
            )
            archive = Archive(postgres.url, stack.prefix)
            await archive.start()
            redis = Redis.from_url(stack.redis.url)
            session_id = await write_session(redis, settings, events)
            url = f"{stack.url}/v1/sessions/{session_id}/events"
            hot_keys, hot_bytes = await memory(redis, settings, session_id)
            from_redis = show("from Redis", await reads(url, repeats))
            began = time.perf_counter()
            archiver = Archiver(redis, archive, settings)
            while await archiver.archive_due():
                pass
            archived_in = time.perf_counter() - began
            await asyncio.sleep(settings.session_ttl_seconds + 1)
            cold_keys, cold_bytes = await memory(redis, settings, session_id)
            from_archive = show("from the archive", await reads(url, repeats))
            print(f"archived in {archived_in:.2f} s (one archiver)")
            print(
                f"Redis: {hot_keys} keys, {hot_bytes:,} bytes while hot; {cold_keys} keys, {cold_bytes:,} bytes after"
            )
            print(
                f"archive / Redis: first event {from_archive[0] / from_redis[0]:.2f}, "
                f"last event {from_archive[1] / from_redis[1]:.2f}"
            )
            await redis.aclose()
        finally:
            await archive.close()
            stack.close()
            postgres.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("-r", "--repeats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.repeats))
