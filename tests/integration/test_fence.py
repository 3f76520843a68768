"""The fence (shared/store/lua/lib/seqs.lua) against a real redis-server: the first entry after a reaper took a run's
lease away is `<seq>-1`, and every read after an id (the store's, a snapshot's, the archive's, a
client's resume through a gateway) starts past that seq's entry whatever its second part, so nothing
is repeated and nothing skipped."""

import json
from typing import Any

import httpx2
from redis.asyncio import Redis

from tests.clients.sse_client import read_events
from tests.support.sessions import completion, delta_of, held, start_a_run
from tests.support.writes import AllWrites
from tokentail.gateway.reading.snapshot import read_snapshots
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.archive import Archive
from tokentail.shared.store.reads import SessionStore, entry_seq
from tokentail.worker.process.archiver import Archiver

FENCED = 5  # the seq of the session's entry after the fence: run.continued, `5-1`
LAST = 7


async def fenced_session(runs: AllWrites, redis: Redis) -> str:
    """run.queued 1, run.started 2, deltas 3 and 4; a reaper takes the run over (the fence); the next
    attempt's run.continued 5 (`5-1`), a delta 6, run.completed 7."""
    session_id, run = await start_a_run(runs)
    lease = await held(runs, session_id, run.run_id)
    await lease.append([delta_of(run.run_id, "a")])
    await lease.append([delta_of(run.run_id, "b")])
    await redis.hset(runs.keys.session(session_id).meta, "lease_until", "0")  # type: ignore[misc]
    await runs.look(session_id)
    started = await runs.start_run(session_id, run.run_id, "job-2", token="lease-2", takeover=4)
    assert started is not None
    await started.lease.append([delta_of(run.run_id, "c")])
    await started.lease.append([], ending=completion(run.run_id, "abc"))
    ids = [entry_id for entry_id, _ in await redis.xrange(runs.keys.session(session_id).events)]
    assert ids == [b"1-0", b"2-0", b"3-0", b"4-0", b"5-1", b"6-0", b"7-0"]
    return session_id


async def test_every_read_after_any_id_repeats_nothing_and_skips_nothing(
    runs: AllWrites, store: SessionStore, redis: Redis
) -> None:
    session_id = await fenced_session(runs, redis)
    for after in range(LAST + 1):
        expected = list(range(after + 1, LAST + 1))
        assert [event.seq for event in await store.read(session_id, after, 100)] == expected
        assert [entry_seq(entry) for entry in await store.read_entries(session_id, after, 100)] == expected
        assert (await store.stream_start(session_id, after))[0] == LAST
        snapshots = [snapshot async for snapshot in read_snapshots(store, session_id, after, LAST, 100, 1 << 20)]
        assert [snapshot.up_to for snapshot in snapshots] == ([LAST] if after < LAST else [])
    source = await store.fork_source(session_id, FENCED)
    assert source is not None and [event.seq for event in source.events] == list(range(1, FENCED + 1))


async def test_a_client_resuming_at_the_fenced_entry_gets_what_follows_it_once(
    runs: AllWrites, redis: Redis, start_gateway: Any
) -> None:
    session_id = await fenced_session(runs, redis)
    gateway = await start_gateway()
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        for after in (FENCED - 1, FENCED):
            sse = await read_events(client, f"/v1/sessions/{session_id}/events", last_event_id=after)
            assert sse.ids == list(range(after + 1, LAST + 1))
            ndjson = {"Accept": "application/x-ndjson"}
            lines = (await client.get(f"/v1/sessions/{session_id}/events?last_event_id={after}", headers=ndjson)).text
            assert [json.loads(line)["id"] for line in lines.splitlines()] == list(range(after + 1, LAST + 1))


async def test_an_archived_session_s_fenced_entry_is_read_back_from_the_archive_once(
    redis: Redis, archive_settings: Settings, archive: Archive, start_gateway: Any
) -> None:
    runs = AllWrites(redis, archive_settings)
    session_id = await fenced_session(runs, redis)
    archiver = Archiver(redis, archive, archive_settings)
    while await archiver.archive_due():
        pass
    assert [event.seq for event in await archive.read(session_id, 0, 100)] == list(range(1, LAST + 1))
    await redis.delete(
        *[key async for key in redis.scan_iter(match=f"{archive_settings.key_prefix}:{{{session_id}}}*")]
    )
    gateway = await start_gateway(archive_url=archive_settings.archive_url)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        for after in (FENCED - 1, FENCED):
            sse = await read_events(client, f"/v1/sessions/{session_id}/events", last_event_id=after)
            assert sse.ids == list(range(after + 1, LAST + 1))
