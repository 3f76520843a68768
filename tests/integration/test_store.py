"""The Lua-backed session store against a real redis-server."""

import json
import time

import pytest
from redis.asyncio import Redis

from shared.errors import LeaseLost, RunConflict, SessionExpired, SessionNotFound
from shared.ids import new_run_id, new_session_id
from shared.jobs import RUN_JOB
from shared.records import RunRecord, SessionRecord
from shared.settings import Settings
from shared.store import SessionStore


def _session() -> SessionRecord:
    return SessionRecord(session_id=new_session_id(), created_at=time.time(), model="scripted")


def _run(text: str = "hello") -> RunRecord:
    return RunRecord(run_id=new_run_id(), input=text, model="scripted")


async def _started(store: SessionStore) -> tuple[str, RunRecord]:
    session = _session()
    run = _run()
    await store.queue_run(session.session_id, run, create=session)
    started = await store.start_run(session.session_id, run.run_id, "lease-1")
    assert started is not None and started[1] == ""
    return session.session_id, started[0]


async def test_queue_run_creates_the_session_records_the_run_and_queues_its_job(
    store: SessionStore, redis: Redis
) -> None:
    session = _session()
    run = _run()
    assert await store.queue_run(session.session_id, run, create=session)
    events = await store.read(session.session_id, 0, 10)
    assert [(e.seq, e.type) for e in events] == [(1, b"run.queued")]
    assert json.loads(events[0].data) == {"run_id": run.run_id, "input": "hello"}
    # The arq job is written in the same script: JSON in arq's layout, and its id in the queue.
    job = json.loads(await redis.get(store.keys.arq_job(run.run_id)))
    assert job["f"] == RUN_JOB and job["a"] == [session.session_id, run.run_id]
    assert await redis.zscore(store.keys.queue, run.run_id) is not None
    state = await store.get_session(session.session_id)
    assert state.active_run_id == run.run_id and state.runs[0].status == "queued" and state.status == "queued"


async def test_a_second_run_while_one_is_active_is_a_conflict(store: SessionStore) -> None:
    session_id, started = await _started(store)
    with pytest.raises(RunConflict) as info:
        await store.queue_run(session_id, _run("again"))
    assert info.value.active_run_id == started.run_id


async def test_unknown_and_deleted_sessions(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound) as info:
        await store.get_session(new_session_id())
    assert not isinstance(info.value, SessionExpired)
    session_id, _ = await _started(store)
    await store.delete_session(session_id)
    with pytest.raises(SessionExpired):
        await store.get_session(session_id)
    with pytest.raises(SessionExpired):
        await store.queue_run(session_id, _run())
    with pytest.raises(SessionExpired):
        await store.stream_position(session_id)


async def test_start_appends_run_started_and_a_second_start_is_refused(store: SessionStore) -> None:
    session_id, started = await _started(store)
    assert started.status == "running" and started.attempt == 1 and started.started_seq == 2
    # arq may deliver the same job twice: the duplicate must not start the run again.
    assert await store.start_run(session_id, started.run_id, "lease-2") is None
    events = await store.read(session_id, 0, 10)
    assert [e.type for e in events] == [b"run.queued", b"run.started"]


async def test_appends_take_contiguous_ids_and_are_fenced_by_the_lease(store: SessionStore, redis: Redis) -> None:
    session_id, run = await _started(store)
    delta = json.dumps({"run_id": run.run_id, "text": "x"})
    assert await store.append(session_id, run.run_id, "lease-1", [("message.delta", delta)] * 3) == 5
    with pytest.raises(LeaseLost):
        await store.append(session_id, run.run_id, "someone-else", [("message.delta", delta)])
    await redis.delete(store.keys.session(session_id).lease)  # the lease expired
    with pytest.raises(LeaseLost):
        await store.append(session_id, run.run_id, "lease-1", [("message.delta", delta)])
    assert [e.seq for e in await store.read(session_id, 0, 100)] == [1, 2, 3, 4, 5]


async def test_a_terminal_event_closes_the_run_frees_the_session_and_starts_retention(
    store: SessionStore, redis: Redis, settings: Settings
) -> None:
    session_id, run = await _started(store)
    delta = json.dumps({"run_id": run.run_id, "text": "hi"})
    done = json.dumps({"run_id": run.run_id, "output": "hi", "usage": {"output_tokens": 1}})
    await store.append(session_id, run.run_id, "lease-1", [("message.delta", delta), ("run.completed", done)])
    state = await store.get_session(session_id)
    assert state.active_run_id is None and state.status == "idle" and state.last_event_id == 4
    assert state.runs[0].status == "completed" and state.runs[0].output == "hi" and state.runs[0].finished_seq == 4
    keys = store.keys.session(session_id)
    assert not await redis.exists(keys.lease)
    for key in (keys.meta, keys.runs, keys.events):
        assert 0 < await redis.ttl(key) <= settings.session_ttl_seconds
    # The tombstone outlives the session so an expired id answers 410.
    assert await redis.ttl(keys.gone) > settings.session_ttl_seconds
    # The session can take a follow-up run, which appends to the same stream and clears the TTL.
    assert await store.queue_run(session_id, _run("more"))
    assert (await store.stream_position(session_id))[0] == 5
    assert await redis.ttl(keys.events) == -1


async def test_failure_is_recorded_with_its_error(store: SessionStore) -> None:
    session_id, run = await _started(store)
    failed = json.dumps({"run_id": run.run_id, "error": {"type": "internal_error", "message": "boom"}})
    await store.append(session_id, run.run_id, "lease-1", [("run.failed", failed)])
    record = (await store.get_session(session_id)).runs[0]
    assert record.status == "failed" and record.error is not None and record.error.message == "boom"


async def test_renew_lease_only_for_its_holder(store: SessionStore, redis: Redis) -> None:
    session_id, _ = await _started(store)
    assert await store.renew_lease(session_id, "r", "lease-1") == 1
    assert await store.renew_lease(session_id, "r", "not-mine") == 0


async def test_streams_are_trimmed_to_about_maxlen(redis: Redis, settings: Settings) -> None:
    store = SessionStore(redis, settings.model_copy(update={"stream_maxlen": 100}))
    session_id, run = await _started(store)
    delta = json.dumps({"run_id": run.run_id, "text": "x"})
    for _ in range(10):
        await store.append(session_id, run.run_id, "lease-1", [("message.delta", delta)] * 50)
    first = await store.first_available(session_id)
    assert first is not None and first > 1
    position, active = await store.stream_position(session_id)
    assert position == 502 and active
    assert await redis.xlen(store.keys.session(session_id).events) < 300


async def test_partial_text_is_the_active_attempts_deltas(store: SessionStore) -> None:
    session_id, run = await _started(store)
    for text in ["Hel", "lo"]:
        data = json.dumps({"run_id": run.run_id, "text": text})
        await store.append(session_id, run.run_id, "lease-1", [("message.delta", data)])
    assert await store.partial_text(session_id, run) == "Hello"


async def test_params_survive_the_lua_scripts_exactly(store: SessionStore) -> None:
    session = _session()
    params = {"seed": 123456789012345678, "stop": [], "nested": {"list": [1, 2.5, "x"]}, "temperature": 0.7}
    run = RunRecord(run_id=new_run_id(), input="hi", model="scripted", params=params)
    await store.queue_run(session.session_id, run, create=session)
    started = await store.start_run(session.session_id, run.run_id, "lease")
    assert started is not None and started[0].params == params
    assert (await store.get_session(session.session_id)).runs[0].params == params


async def _expire(store: SessionStore, redis: Redis, session_id: str) -> None:
    """What a killed worker leaves behind: no lease, and its entry in the index out of date."""
    await redis.delete(store.keys.session(session_id).lease)
    await redis.zadd(store.keys.leases, {session_id: 0})


async def test_a_run_whose_lease_expired_is_requeued_once_and_taken_over_as_the_next_attempt(
    store: SessionStore, redis: Redis
) -> None:
    session_id, run = await _started(store)
    assert await store.expired_leases() == []
    await _expire(store, redis, session_id)
    assert await store.expired_leases() == [session_id]
    assert await store.requeue_run(session_id, run.run_id)
    assert not await store.requeue_run(session_id, run.run_id)  # another reaper finds nothing to do
    assert await redis.zcard(store.keys.queue) == 2  # the first job and the takeover's
    taken = await store.start_run(session_id, run.run_id, "lease-2")
    assert taken is not None and taken[1] == "" and taken[0].attempt == 2
    events = await store.read(session_id, 0, 100)
    assert [e.type for e in events] == [b"run.queued", b"run.started", b"run.retrying", b"run.started"]
    assert json.loads(events[2].data)["attempt"] == 2 and taken[0].started_seq == 4
    assert await store.start_run(session_id, run.run_id, "lease-3") is None  # the stale first job


async def test_a_hand_over_needs_the_current_lease(store: SessionStore, redis: Redis) -> None:
    session_id, run = await _started(store)
    assert not await store.requeue_run(session_id, run.run_id, "not-mine")
    assert await store.requeue_run(session_id, run.run_id, "lease-1")
    assert not await redis.exists(store.keys.session(session_id).lease)
    assert await store.start_run(session_id, run.run_id, "lease-2") is not None


async def test_after_max_attempts_the_run_is_to_be_failed(redis: Redis, settings: Settings) -> None:
    store = SessionStore(redis, settings.model_copy(update={"max_attempts": 1}))
    session_id, run = await _started(store)
    await _expire(store, redis, session_id)
    taken = await store.start_run(session_id, run.run_id, "lease-2")
    assert taken is not None and taken[1] == "exhausted"
    assert [e.type for e in await store.read(session_id, 0, 100)] == [b"run.queued", b"run.started"]


async def test_cancel_marks_the_active_run_and_is_idempotent(store: SessionStore, redis: Redis) -> None:
    session = _session()
    with pytest.raises(SessionNotFound):
        await store.cancel_run(session.session_id)
    run = _run()
    await store.queue_run(session.session_id, run, create=session)
    pubsub = redis.pubsub()
    await pubsub.subscribe(store.keys.cancel_channel)
    assert await store.cancel_run(session.session_id) == run.run_id
    assert await store.cancel_run(session.session_id) == run.run_id
    messages = []
    for _ in range(3):  # the subscribe confirmation, then at most one cancel
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            messages.append(message["data"])
    assert messages == [run.run_id.encode()]  # published once
    await pubsub.aclose()
    started = await store.start_run(session.session_id, run.run_id, "lease")
    assert started is not None and started[1] == "cancel"  # a queued run is cancelled when picked up
    assert await store.renew_lease(session.session_id, run.run_id, "lease") == 2
    ended = json.dumps({"run_id": run.run_id, "reason": "cancelled by request"})
    await store.append(session.session_id, run.run_id, "lease", [("run.cancelled", ended)])
    assert await store.cancel_run(session.session_id) is None  # nothing active any more
    record = (await store.get_session(session.session_id)).runs[0]
    assert record.status == "cancelled" and record.reason == "cancelled by request"


async def test_enqueue_waits_in_line_and_starts_when_the_active_run_ends(store: SessionStore, redis: Redis) -> None:
    session_id, run = await _started(store)
    second, third = _run("second"), _run("third")
    assert not await store.queue_run(session_id, second, multitask="enqueue")
    assert not await store.queue_run(session_id, third, multitask="enqueue")
    assert not await redis.exists(store.keys.arq_job(second.run_id))  # no job until its turn
    done = json.dumps({"run_id": run.run_id, "output": "", "usage": {}})
    await store.append(session_id, run.run_id, "lease-1", [("run.completed", done)])
    state = await store.get_session(session_id)
    assert state.active_run_id == second.run_id and state.status == "queued"
    job = json.loads(await redis.get(store.keys.arq_job(second.run_id)))
    assert job == {"t": None, "f": "run_agent", "a": [session_id, second.run_id], "k": {}, "et": job["et"]}
    assert await redis.ttl(store.keys.session(session_id).events) == -1  # still working: no expiry
    started = await store.start_run(session_id, second.run_id, "lease-2")
    assert started is not None and started[0].attempt == 1


async def test_interrupt_cancels_the_active_run_and_supersedes_the_line(store: SessionStore, redis: Redis) -> None:
    session_id, run = await _started(store)
    waiting, urgent, latest = _run("waiting"), _run("urgent"), _run("latest")
    await store.queue_run(session_id, waiting, multitask="enqueue")
    assert not await store.queue_run(session_id, urgent, multitask="interrupt")
    assert not await store.queue_run(session_id, latest, multitask="interrupt")  # supersedes `urgent` too
    assert await store.renew_lease(session_id, run.run_id, "lease-1") == 2  # the cancel reached it
    cancelled = json.dumps({"run_id": run.run_id, "reason": "cancelled by request"})
    await store.append(session_id, run.run_id, "lease-1", [("run.cancelled", cancelled)])
    assert await store.active_run_id(session_id) == latest.run_id
    statuses = {r.run_id: r.status for r in (await store.get_session(session_id)).runs}
    assert statuses == {
        run.run_id: "cancelled",
        waiting.run_id: "cancelled",
        urgent.run_id: "cancelled",
        latest.run_id: "queued",
    }
    ended = [json.loads(e.data)["run_id"] for e in await store.read(session_id, 0, 100) if e.type == b"run.cancelled"]
    assert ended == [waiting.run_id, urgent.run_id, run.run_id]


async def test_hand_overs_do_not_count_as_failed_attempts(redis: Redis, settings: Settings) -> None:
    store = SessionStore(redis, settings.model_copy(update={"max_attempts": 1}))
    session_id, run = await _started(store)
    for attempt in range(2, 5):  # three deploys in a row
        assert await store.requeue_run(session_id, run.run_id, f"lease-{attempt - 1}")
        taken = await store.start_run(session_id, run.run_id, f"lease-{attempt}")
        assert taken is not None and taken[1] == "" and taken[0].attempt == attempt


async def test_an_append_sent_twice_with_one_id_lands_once(store: SessionStore) -> None:
    session_id, run = await _started(store)
    delta = json.dumps({"run_id": run.run_id, "text": "once"})
    first = await store.append(session_id, run.run_id, "lease-1", [("message.delta", delta)], append_id="a1")
    again = await store.append(session_id, run.run_id, "lease-1", [("message.delta", delta)], append_id="a1")
    assert first == again == 3
    done = json.dumps({"run_id": run.run_id, "output": "once", "usage": {}})
    last = await store.append(session_id, run.run_id, "lease-1", [("run.completed", done)], append_id="a2")
    # The terminal append dropped the lease; its retry must still answer, not be fenced.
    assert await store.append(session_id, run.run_id, "lease-1", [("run.completed", done)], append_id="a2") == last
    assert [e.seq for e in await store.read(session_id, 0, 100)] == [1, 2, 3, 4]
