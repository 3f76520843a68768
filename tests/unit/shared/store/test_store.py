"""shared/store/reads.py: what the gateway reads of a session (its record, its owner, its stream), on fakeredis."""

import json

import pytest
from redis.asyncio import Redis

from tests.support.sessions import completion, delta_of, make_run, make_session, start_a_run
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_session_id
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore, parse_raw_entries
from tokentail.shared.vocabulary.errors import SessionExpired, SessionNotFound
from tokentail.worker.writes.run_writes import RunLease


async def test_unknown_and_deleted_sessions_are_told_apart(store: SessionStore, runs: AllWrites) -> None:
    unknown = new_session_id()
    for read in (store.get_session, store.stream_position, store.stream_start):
        with pytest.raises(SessionNotFound) as info:
            await read(unknown)
        assert not isinstance(info.value, SessionExpired)
    session_id, _ = await start_a_run(runs)
    await runs.delete_session(await store.get_session(session_id))
    for read in (store.get_session, store.stream_position, store.stream_start):
        with pytest.raises(SessionExpired):
            await read(session_id)


async def test_a_session_reads_back_as_it_was_created(store: SessionStore, runs: AllWrites) -> None:
    session = make_session("acme").model_copy(update={"params": {"tokens": 3}, "metadata": {"user": "u1"}})
    first, second = make_run("first"), make_run("second")
    await runs.queue_run(session.session_id, first, create=session)
    await runs.queue_run(session.session_id, second, multitask="enqueue")
    state = await store.get_session(session.session_id)
    assert (state.tenant, state.model, state.agent) == ("acme", "scripted", None)
    assert state.params == {"tokens": 3} and state.metadata == {"user": "u1"}
    assert state.created_at == session.created_at
    assert [run.run_id for run in state.runs] == [first.run_id, second.run_id]  # in the order queued
    assert state.active_run_id == first.run_id and state.last_event_id == 2
    assert await store.stream_position(session.session_id) == (2, True)
    assert await store.stream_start(session.session_id) == (2, True, 1)


async def test_reads_start_after_an_id_and_stop_at_a_count(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    await RunLease(runs, session_id, run.run_id, "lease-1").append([delta_of(run.run_id, str(i)) for i in range(5)])
    assert [e.seq for e in await store.read(session_id, 0, 100)] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.seq for e in await store.read(session_id, 3, 2)] == [4, 5]
    assert await store.read(session_id, 7, 10) == []
    event = (await store.read(session_id, 4, 1))[0]
    assert event.type == b"message.delta" and json.loads(event.data) == {"run_id": run.run_id, "text": "2"}
    assert event.ts_us > 1_600_000_000 * 10**6  # Redis time of the append, in microseconds


async def test_a_completed_run_s_output_is_stored_once_and_read_back_with_its_event(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    answer = 'Say "hi" \\ ünïcode'
    await RunLease(runs, session_id, run.run_id, "lease-1").append(
        [delta_of(run.run_id, answer)], ending=completion(run.run_id, answer)
    )
    stored = (await redis.xrange(store.keys.session(session_id).events, "4-0", "4-0"))[0][1]
    assert stored[b"type"] == b"run.completed" and b'"output"' not in stored[b"data"]  # the record keeps it
    [completed] = [e for e in await store.read(session_id, 0, 100) if e.type == b"run.completed"]
    assert json.loads(completed.data) == {"run_id": run.run_id, "usage": {"output_tokens": 1}, "output": answer}
    assert (await store.get_session(session_id)).runs[0].output == answer


async def test_entries_read_hold_the_events_read_outputs_added(store: SessionStore, runs: AllWrites) -> None:
    # The gateway's catch-up reads entries as Redis sends them (read_entries); every other reader, events.
    session_id, run = await start_a_run(runs)
    lease = RunLease(runs, session_id, run.run_id, "lease-1")
    await lease.append([delta_of(run.run_id, str(i)) for i in range(5)], ending=completion(run.run_id, "ünï"))
    second = make_run("second")
    await runs.queue_run(session_id, second)
    for after, count in ((0, 100), (0, 3), (3, 2), (6, 1), (7, 2), (7, 100), (9, 10)):
        entries = await store.read_entries(session_id, after, count)
        assert parse_raw_entries(entries) == await store.read(session_id, after, count), (after, count)
    [completed] = [
        e for e in parse_raw_entries(await store.read_entries(session_id, 0, 100)) if e.type == b"run.completed"
    ]
    assert json.loads(completed.data)["output"] == "ünï"


async def test_streams_are_trimmed_to_about_maxlen(redis: Redis, settings: Settings) -> None:
    settings = settings.model_copy(update={"stream_maxlen": 100})
    store, runs = SessionStore(redis, settings), AllWrites(redis, settings)
    session_id, run = await start_a_run(runs)
    assert await store.stream_start(session_id) == (2, True, 1)  # run.queued, run.started
    lease = RunLease(runs, session_id, run.run_id, "lease-1")
    for _ in range(10):
        await lease.append([delta_of(run.run_id)] * 50)
    last_seq, active, first = await store.stream_start(session_id)
    assert first is not None and first > 1 and (last_seq, active) == (502, True)
    assert [e.seq for e in await store.read(session_id, 0, 1)] == [first]  # reads start where the stream does
    assert await store.stream_position(session_id) == (502, True)
    assert await redis.xlen(store.keys.session(session_id).events) < 300


async def test_partial_text_is_the_active_attempt_s_deltas(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    for text in ["Hel", "lo"]:
        await RunLease(runs, session_id, run.run_id, "lease-1").append([delta_of(run.run_id, text)])
    assert await store.partial_text(session_id, run) == "Hello"
    # Taken over: the next attempt starts from nothing.
    await runs.requeue(session_id, "lease-1")
    taken = await runs.start_run(session_id, run.run_id, "job", token="lease-2")
    assert taken is not None
    assert await store.partial_text(session_id, taken.run) == ""
    await taken.lease.append([delta_of(run.run_id, "Hi")])
    assert await store.partial_text(session_id, taken.run) == "Hi"
    assert await store.partial_text(session_id, make_run()) == ""  # never started


async def test_the_owner_of_a_session_is_known_while_it_lives_and_after(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs, tenant="acme")
    assert await store.session_owner(session_id) == "acme"
    await runs.delete_session(await store.get_session(session_id))
    assert await store.session_owner(session_id) == "acme"  # so another tenant is told 404, not 410
    ended, run = await start_a_run(runs, tenant="acme")
    await RunLease(runs, ended, run.run_id, "lease-1").append([], ending=completion(run.run_id))
    assert await store.session_owner(ended) == "acme"
    assert await store.session_owner(new_session_id()) is None
