"""The archive in a real PostgreSQL: sessions copied under their ids, read back through the gateway
once Redis forgot them, a trimmed prefix read from it with no gap, a Postgres down that delays only
the archiving, deletion and retention."""

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx2
import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from tests.clients.sse_client import read_events
from tests.servers.postgres_server import PostgresServer
from tests.support.sessions import completion, delta_of, make_run, start_a_run, write_turns
from tests.support.waiting import eventually, scaled
from tests.support.write_side import lease_of
from tests.support.writes import AllWrites
from tokentail.cli import main
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.archive import Archive, ArchiveError, migrate
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore, StoredEvent
from tokentail.shared.vocabulary.errors import ArchiveUnavailable
from tokentail.shared.vocabulary.records import STEERS_STEP
from tokentail.worker.process.archiver import BATCH, Archiver
from tokentail.worker.writes.run_writes import RunLease


async def archive_all(archiver: Archiver) -> None:
    """Run the archiver until nothing is due (entries of running sessions stay, claimed ahead)."""
    while await archiver.archive_due():
        pass


async def session_keys(redis: Redis, settings: Settings, session_id: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"{settings.key_prefix}:{{{session_id}}}*")]


async def ttls(redis: Redis, keys: list[bytes]) -> list[int]:
    return [await redis.ttl(key) for key in keys]


@pytest.fixture
async def own_postgres(archive_settings: Settings) -> AsyncIterator[tuple[PostgresServer, Settings, Archive]]:
    """A PostgreSQL of the test's own, migrated, to stop or freeze; the settings and an archive on it."""
    server = PostgresServer().start()
    try:
        await migrate(server.url)
        settings = archive_settings.model_copy(update={"archive_url": server.url})
        archive = Archive(server.url, settings.key_prefix)
        await archive.start()
        try:
            yield server, settings, archive
        finally:
            server.thaw()
            await archive.close()
    finally:
        server.stop()


async def test_migrations_run_once_and_a_schema_behind_is_refused_with_what_to_do(postgres: PostgresServer) -> None:
    assert await migrate(postgres.url) == []  # the fixture applied them; again, and at once, nothing
    assert list(await asyncio.gather(migrate(postgres.url), migrate(postgres.url))) == [[], []]
    connection = await asyncpg.connect(postgres.url)
    await connection.execute("CREATE DATABASE unmigrated")
    await connection.close()
    fresh = Archive(postgres.url.rsplit("/", 1)[0] + "/unmigrated", "x")
    await fresh.start()
    try:
        with pytest.raises(ArchiveError, match="tokentail migrate"):
            await fresh.check_schema()
    finally:
        await fresh.close()


async def test_a_finished_session_is_read_back_from_the_archive_once_redis_forgot_it(
    redis: Redis, archive_settings: Settings, archive: Archive, start_gateway: Any
) -> None:
    runs = AllWrites(redis, archive_settings)
    session_id, _ = await write_turns(runs, turns=3, deltas=40)
    gateway = await start_gateway(archive_url=archive_settings.archive_url)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        before = await read_events(client, f"/v1/sessions/{session_id}/events")
        state = (await client.get(f"/v1/sessions/{session_id}")).json()
        # Finished, but not archived: Redis keeps it, with no expiry yet.
        assert set(await ttls(redis, await session_keys(redis, archive_settings, session_id))) == {-1}
        archiver = Archiver(redis, archive, archive_settings)
        await archive_all(archiver)
        keys = await session_keys(redis, archive_settings, session_id)
        assert keys and all(0 < ttl <= archive_settings.session_ttl_seconds for ttl in await ttls(redis, keys))
        index = Keys(archive_settings.key_prefix).archive_checks
        assert not await redis.zscore(index, session_id)
        # Copied again from the start (as after a lost reply): stored once.
        await redis.hset(Keys(archive_settings.key_prefix).session(session_id).meta, "archived", "0")  # type: ignore[misc]
        await redis.zadd(index, {session_id: 0})
        assert await archiver.archive_due() == 1
        assert [event.seq for event in await archive.read(session_id, 0, 10_000)] == before.ids
        await redis.delete(*keys)  # what the hot retention does
        assert await session_keys(redis, archive_settings, session_id) == []
        after = await read_events(client, f"/v1/sessions/{session_id}/events")
        assert after.events == before.events and after.ids == list(range(1, len(before.ids) + 1))
        assert (await client.get(f"/v1/sessions/{session_id}")).json() == state  # the transcript too
        middle = await read_events(client, f"/v1/sessions/{session_id}/events", last_event_id=50)
        assert middle.ids == before.ids[50:]
        assert (
            await read_events(client, f"/v1/sessions/{session_id}/events", last_event_id=before.ids[-1])
        ).status == 204
        compacted = await read_events(client, f"/v1/sessions/{session_id}/events?catch_up=snapshot")
        assert [event for _, event, _ in compacted.events] == ["snapshot"]
        # Deleted: gone from the archive too.
        assert (await client.delete(f"/v1/sessions/{session_id}")).status_code == 204
        assert await archive.session(session_id) is None
        assert (await client.get(f"/v1/sessions/{session_id}")).status_code == 410


async def test_the_steers_a_run_took_in_are_archived_with_their_texts(
    redis: Redis, archive_settings: Settings, archive: Archive, start_gateway: Any
) -> None:
    # Their texts are kept apart from the run's record, in the session's steered hash (lib/steers.lua),
    # which expires with the session once archived: the archive keeps them in the record.
    runs = AllWrites(redis, archive_settings)
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    await lease.append([delta_of(run.run_id, "Paris is")])
    await runs.steer(session_id, "st_1", "in French")
    await lease.apply_steers(f"{STEERS_STEP}#0", len("Paris is"))
    await lease.append(
        [delta_of(run.run_id, "\n\nParis est.")], ending=completion(run.run_id, "Paris is\n\nParis est.")
    )
    gateway = await start_gateway(archive_url=archive_settings.archive_url)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        state = (await client.get(f"/v1/sessions/{session_id}")).json()
        assert [turn["content"] for turn in state["transcript"]] == [run.input, "Paris is", "in French", "Paris est."]
        await archive_all(Archiver(redis, archive, archive_settings))
        keys = await session_keys(redis, archive_settings, session_id)
        assert all(0 < ttl <= archive_settings.session_ttl_seconds for ttl in await ttls(redis, keys))
        await redis.delete(*keys)  # what the hot retention does
        assert (await client.get(f"/v1/sessions/{session_id}")).json() == state


async def test_a_stream_is_trimmed_only_past_what_the_archive_has_and_reads_on_with_no_gap(
    redis: Redis, archive_settings: Settings, archive: Archive, start_gateway: Any
) -> None:
    settings = archive_settings.model_copy(update={"stream_maxlen": 100})
    runs = AllWrites(redis, settings)
    session_id, lease = await write_turns(runs, turns=1, deltas=400, last_ends=False)
    events_key = Keys(settings.key_prefix).session(session_id).events
    assert await redis.xlen(events_key) == 402  # nothing archived: nothing trimmed, past the bound
    archiver = Archiver(redis, archive, settings)
    await redis.zadd(Keys(settings.key_prefix).archive_checks, {session_id: 0})  # as if its 30 s came
    assert await archiver.archive_due() == 1
    await lease.append([delta_of(lease.run_id, "more ") for _ in range(200)])
    assert await redis.xlen(events_key) < 402  # trimmed now, down to about the bound
    first = int((await redis.xrange(events_key, count=1))[0][0].split(b"-")[0])
    assert 1 < first <= 403
    gateway = await start_gateway(archive_url=settings.archive_url, stream_maxlen=100)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        await lease.append([], ending=completion(lease.run_id))
        received = await read_events(client, f"/v1/sessions/{session_id}/events")
    assert received.ids == list(range(1, 604)) and not received.of("gap")


async def test_a_postgres_down_delays_the_archiving_and_loses_nothing(
    redis: Redis, own_postgres: tuple[PostgresServer, Settings, Archive], start_gateway: Any
) -> None:
    server, settings, archive = own_postgres
    server.pause()  # stopped while a session waits to be archived
    runs = AllWrites(redis, settings)
    session_id, _ = await write_turns(runs, turns=2, deltas=20)  # runs end as ever
    archiver = Archiver(redis, archive, settings, claim_ms=1000)
    with pytest.raises(ArchiveUnavailable):
        await archiver.archive_due()
    keys = await session_keys(redis, settings, session_id)
    assert keys and set(await ttls(redis, keys)) == {-1}  # nothing forgotten meanwhile
    gateway = await start_gateway(archive_url=settings.archive_url)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        live = await read_events(client, f"/v1/sessions/{session_id}/events")  # Redis serves it
        assert len(live.ids) == 2 * 23
    server.resume()

    async def archived() -> bool:  # once the claim of the failed attempt lapses, the entry comes due
        await archive_all(archiver)
        return len(await archive.read(session_id, 0, 1000)) == 2 * 23

    await eventually(archived, within=15, what="the session archived once Postgres is back")


async def test_retention_deletes_what_was_archived_before_it(
    redis: Redis, archive_settings: Settings, archive: Archive
) -> None:
    runs = AllWrites(redis, archive_settings)
    session_id, _ = await write_turns(runs, turns=1, deltas=5)
    await archive_all(Archiver(redis, archive, archive_settings))
    assert await archive.session(session_id) is not None
    assert await archive.forget_before(0) == 0
    assert await archive.forget_before(4e9) >= 1
    assert await archive.session(session_id) is None and await archive.read(session_id, 0, 10) == []


def test_settings_refuse_an_archive_with_a_cluster_and_a_url_that_is_not_postgres() -> None:
    with pytest.raises(ValueError, match="postgres"):
        Settings(archive_url="mysql://x")
    with pytest.raises(ValueError, match="REDIS_CLUSTER"):
        Settings(archive_url="postgresql://x", redis_cluster=True, queue_redis_url="redis://y")
    assert json.loads(Settings(archive_url="postgresql://u@h/db").model_dump_json())["archive_url"]


async def test_workers_archive_what_they_run_redis_forgets_it_and_a_new_turn_brings_it_back(
    redis: Redis, archive_settings: Settings, archive: Archive, start_gateway: Any, start_worker: Any
) -> None:
    gateway = await start_gateway(archive_url=archive_settings.archive_url)
    await start_worker(archive_url=archive_settings.archive_url, session_ttl_seconds=1)
    async with httpx2.AsyncClient(base_url=gateway.url) as client:
        created = (await client.post("/v1/sessions", json={"input": "hi", "params": {"tokens": 30}})).json()
        session_id = created["session_id"]
        first = await read_events(client, created["events_url"])
        assert first.events[-1][1] == "run.completed"

        async def archived_and_forgotten() -> bool:
            archived = await archive.read(session_id, 0, 1000)
            keys = await session_keys(redis, archive_settings, session_id)
            return [event.seq for event in archived] == first.ids and keys == []

        await eventually(archived_and_forgotten, within=15, what="the session archived, then gone from Redis")
        assert (await read_events(client, created["events_url"])).events == first.events
        follow_up = await client.post(
            f"/v1/sessions/{session_id}/runs", json={"input": "again", "params": {"tokens": 5}}
        )
        assert follow_up.status_code == 202, follow_up.text
        everything = await read_events(client, created["events_url"])
        assert everything.ids == list(range(1, len(everything.ids) + 1))  # one sequence, no gap
        assert everything.events[: len(first.events)] == first.events
        assert everything.events[-1][1] == "run.completed"
        state = (await client.get(f"/v1/sessions/{session_id}")).json()
        assert [turn["content"] for turn in state["transcript"] if turn["role"] == "user"] == ["hi", "again"]


async def test_the_migrate_and_archiver_commands(
    redis: Redis, archive_settings: Settings, archive: Archive, postgres: PostgresServer
) -> None:
    migrated = await asyncio.to_thread(CliRunner().invoke, main, ["migrate", "--url", postgres.url])
    assert migrated.exit_code == 0 and "nothing to do" in migrated.output
    refused = await asyncio.to_thread(CliRunner().invoke, main, ["archiver"], env={"TOKENTAIL_ARCHIVE_URL": None})
    assert refused.exit_code != 0 and "TOKENTAIL_ARCHIVE_URL is not set" in refused.output
    # `tokentail archiver` as its own process copies a session the workers did not.
    session_id, _ = await write_turns(AllWrites(redis, archive_settings), turns=2, deltas=10)
    env = {
        **os.environ,
        "TOKENTAIL_REDIS_URL": str(archive_settings.redis_url),
        "TOKENTAIL_KEY_PREFIX": archive_settings.key_prefix,
        "TOKENTAIL_ARCHIVE_URL": postgres.url,
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "tokentail.cli", "archiver", env=env)
    try:

        async def archived() -> bool:
            return len(await archive.read(session_id, 0, 100)) == 2 * 13

        await eventually(archived, within=15, what="the session archived by `tokentail archiver`")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), scaled(10)) is not None


async def test_a_run_that_ends_during_a_pass_of_several_batches_is_archived_ended_and_its_next_turn_is_kept(
    redis: Redis, archive_settings: Settings, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the record was read once, before the pass; a run that ended between its batches was
    # archived `running`, with a last id before its end; a session brought back from that record gave
    # its ids out again, and its new turn was lost to the archive's `ON CONFLICT DO NOTHING`.
    runs = AllWrites(redis, archive_settings, archive=archive)
    session_id, lease = await write_turns(runs, turns=1, deltas=2 * BATCH + 500, last_ends=False)
    saved = archive.save
    batches = 0

    async def the_run_ends_after_the_first_batch(*args: Any) -> None:
        nonlocal batches
        await saved(*args)
        batches += 1
        if batches == 1:
            await lease.append([delta_of(lease.run_id, "last ")], ending=completion(lease.run_id, "the answer"))

    monkeypatch.setattr(archive, "save", the_run_ends_after_the_first_batch)
    archiver = Archiver(redis, archive, archive_settings)
    await redis.zadd(Keys(archive_settings.key_prefix).archive_checks, {session_id: 0})  # as if its 30 s came
    await archive_all(archiver)
    assert batches >= 3
    last = 2 * BATCH + 500 + 4  # run.queued, run.started, the deltas, the last delta, run.completed
    stored = await archive.session(session_id)
    assert stored is not None and stored.last_event_id == last
    record = json.loads(stored.record)
    assert record["last_event_id"] == last and record["runs"][0]["status"] == "completed"
    assert record["runs"][0]["output"] == "the answer"

    # Redis forgets it; a new turn brings it back, after the last archived id.
    await redis.delete(*await session_keys(redis, archive_settings, session_id))
    turn = make_run("again")
    await runs.queue_run(session_id, turn)
    assert turn.queued_seq == last + 1
    started = await runs.start_run(session_id, turn.run_id, turn.run_id, token="lease-again")
    assert started is not None
    again = RunLease(runs, session_id, turn.run_id, "lease-again")
    await again.append([delta_of(turn.run_id, "new ")], ending=completion(turn.run_id, "new "))
    await redis.zadd(Keys(archive_settings.key_prefix).archive_checks, {session_id: 0})
    await archive_all(archiver)
    await redis.delete(*await session_keys(redis, archive_settings, session_id))
    everything = await archive.read(session_id, 0, 10_000)
    assert [event.seq for event in everything] == list(range(1, last + 5))  # one sequence, no gap
    assert [json.loads(event.data)["run_id"] for event in everything[last:]] == [turn.run_id] * 4
    assert json.loads(everything[-1].data)["output"] == "new "


async def test_a_session_brought_back_starts_after_the_last_archived_event_even_if_its_record_is_behind(
    redis: Redis, archive_settings: Settings, archive: Archive
) -> None:
    # As an archive written by a version that saved a stale record left it: events up to 8, a record at 5.
    runs = AllWrites(redis, archive_settings, archive=archive)
    session_id, lease = await write_turns(runs, turns=1, deltas=4)  # 7 events
    record = await SessionStore(redis, archive_settings).get_session(session_id)
    events = await SessionStore(redis, archive_settings).read_hot(session_id, 0, 100)
    behind = record.model_copy(update={"last_event_id": 5}).model_dump_json()
    await archive.save(session_id, record.tenant, behind, 5, events)
    await redis.delete(*await session_keys(redis, archive_settings, session_id))
    turn = make_run("again")
    await runs.queue_run(session_id, turn)
    assert turn.queued_seq == 8


async def test_events_that_differ_from_the_archives_under_the_same_ids_stop_archiving_that_session_loudly(
    redis: Redis, archive_settings: Settings, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    runs = AllWrites(redis, archive_settings)
    clashing, _ = await write_turns(runs, turns=1, deltas=4)
    fine, _ = await write_turns(runs, turns=1, deltas=4)
    store = SessionStore(redis, archive_settings)
    record = await store.get_session(clashing)
    other = StoredEvent(3, b"message.delta", b'{"run_id":"r_other","text":"not this"}', 0)
    await archive.save(clashing, record.tenant, record.model_dump_json(), 3, [other])
    index = Keys(archive_settings.key_prefix).archive_checks
    await redis.zadd(index, {clashing: 0, fine: 0})
    archiver = Archiver(redis, archive, archive_settings)
    with caplog.at_level(logging.ERROR, logger="tokentail.worker.process.archiver"):
        assert await archiver.archive_due() == 2
    assert any(clashing in message and "[3]" in message for message in caplog.messages)
    # Nothing of the clashing batch written, the archive's event kept; Redis keeps the session, unexpiring.
    assert await archive.read(clashing, 0, 100) == [other]
    assert await redis.hget(Keys(archive_settings.key_prefix).session(clashing).meta, "archived") in (None, b"0")  # type: ignore[misc]
    assert set(await ttls(redis, await session_keys(redis, archive_settings, clashing))) == {-1}
    assert (await redis.zscore(index, clashing) or 0) > time.time() * 1000 + 300_000  # looked at again later
    # The other session of the same round is archived as ever.
    assert len(await archive.read(fine, 0, 100)) == 7


async def test_a_reconnect_inside_what_redis_holds_follows_a_live_session_while_postgres_is_down(
    redis: Redis, own_postgres: tuple[PostgresServer, Settings, Archive], start_gateway: Any
) -> None:
    # Regression: opening a stream asked the archive for its first id whenever the Redis stream did not
    # start at 1 (a long or a revived session): with Postgres down, every reconnect to a live turn was 503.
    server, settings, archive = own_postgres
    settings = settings.model_copy(update={"stream_maxlen": 100})
    session_id, lease = await write_turns(AllWrites(redis, settings), turns=1, deltas=400, last_ends=False)
    await redis.zadd(Keys(settings.key_prefix).archive_checks, {session_id: 0})
    await Archiver(redis, archive, settings).archive_due()
    await lease.append([delta_of(lease.run_id, "more ") for _ in range(200)])  # trimmed past what is archived
    first = int(
        (await redis.xrange(Keys(settings.key_prefix).session(session_id).events, count=1))[0][0].split(b"-")[0]
    )
    assert first > 1
    server.pause()
    gateway = await start_gateway(archive_url=settings.archive_url, stream_maxlen=100)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        url = f"/v1/sessions/{session_id}/events"
        reading = asyncio.create_task(read_events(client, url, last_event_id=592))
        await lease.append([], ending=completion(lease.run_id))
        received = await reading
        assert received.status == 200
        assert received.ids == list(range(593, 604)) and received.events[-1][1] == "run.completed"
        assert (await client.get(f"/v1/sessions/{session_id}")).status_code == 200  # Redis has the record
        # What only the archive has is unavailable, and said so.
        assert (await client.get(url, headers={"Last-Event-ID": "10"})).status_code == 503


async def test_a_frozen_postgres_holds_a_reader_no_longer_than_the_archive_timeout(
    redis: Redis, own_postgres: tuple[PostgresServer, Settings, Archive], start_gateway: Any
) -> None:
    # Regression: with Postgres stopped by SIGSTOP, a read of what only the archive had answered after
    # 120 s (asyncpg's 60 s command timeout, then its cancel waiting on the frozen server as long).
    server, settings, archive = own_postgres
    session_id, _ = await write_turns(AllWrites(redis, settings), turns=2, deltas=10)
    await archive_all(Archiver(redis, archive, settings))
    await redis.delete(*await session_keys(redis, settings, session_id))
    gateway = await start_gateway(archive_url=settings.archive_url, archive_timeout_seconds=1.0)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=60) as client:
        url = f"/v1/sessions/{session_id}/events"
        assert len((await read_events(client, url)).ids) == 2 * 13  # its pool holds a connection now
        server.freeze()
        for path in (url, f"/v1/sessions/{session_id}"):  # a held connection, then a new one
            began = time.monotonic()
            answer = await client.get(path)
            assert answer.status_code == 503 and answer.json()["error"]["type"] == "archive_unavailable"
            assert time.monotonic() - began < 15  # the 1 s bound, and slack for a loaded machine; not 120 s
        server.thaw()

        async def served() -> bool:
            return len((await read_events(client, url)).ids) == 2 * 13

        await eventually(served, within=30, what="the archive read again once Postgres runs again")


async def test_a_delete_while_postgres_is_down_deletes_the_session_and_says_its_archived_copy_follows(
    redis: Redis, own_postgres: tuple[PostgresServer, Settings, Archive], start_gateway: Any
) -> None:
    # Regression: the deletion took effect, yet the answer was 503 (and a retry 410).
    server, settings, archive = own_postgres
    session_id, _ = await write_turns(AllWrites(redis, settings), turns=1, deltas=5)
    archiver = Archiver(redis, archive, settings, claim_ms=500)
    await archive_all(archiver)
    assert await archive.session(session_id) is not None
    gateway = await start_gateway(archive_url=settings.archive_url)
    server.pause()
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        deleted = await client.delete(f"/v1/sessions/{session_id}")
        assert deleted.status_code == 202, deleted.text
        assert deleted.json() == {"session_id": session_id, "deleted": True, "archive": "pending"}
        assert (await client.get(f"/v1/sessions/{session_id}")).status_code == 410
    server.resume()

    async def copy_deleted() -> bool:
        await archiver.archive_due()
        return await archive.session(session_id) is None

    await eventually(copy_deleted, within=30, what="the archived copy deleted once Postgres is back")
