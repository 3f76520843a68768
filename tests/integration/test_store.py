"""The Lua-backed session store against a real redis-server."""

import json
import time
from collections.abc import Awaitable, Callable

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from gateway.ids import new_run_id, new_session_id
from shared.errors import LeaseLost, RunConflict, SessionExpired, SessionNotFound
from shared.events import ErrorInfo, RunCancelled, RunCompleted, RunFailed
from shared.jobs import RUN_JOB
from shared.lifecycle import Cancel, Queued, Renewal, Requeue, RunLease, RunLifecycle, StartVerdict
from shared.outage import out_of_memory
from shared.records import RunRecord, SessionRecord
from shared.settings import Settings
from shared.store import SessionStore
from tests.redis_faults import fill


def _session(tenant: str = "public") -> SessionRecord:
    return SessionRecord(session_id=new_session_id(), created_at=time.time(), model="scripted", tenant=tenant)


def _run(text: str = "hello") -> RunRecord:
    return RunRecord(run_id=new_run_id(), input=text, model="scripted")


def _delta(run_id: str, text: str = "x") -> tuple[str, str]:
    return "message.delta", json.dumps({"run_id": run_id, "text": text})


def _done(run_id: str, output: str = "") -> RunCompleted:
    return RunCompleted(run_id=run_id, output=output, usage={"output_tokens": 1})


async def _started(runs: RunLifecycle, tenant: str = "public") -> tuple[str, RunRecord]:
    session = _session(tenant)
    run = _run()
    await runs.queue_run(session.session_id, run, create=session)
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1")
    assert started is not None and started.verdict is StartVerdict.RUN
    return session.session_id, started.run


async def test_queue_run_creates_the_session_records_the_run_and_queues_its_job(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    session = _session()
    run = _run()
    assert await runs.queue_run(session.session_id, run, create=session) is Queued.STARTED
    events = await store.read(session.session_id, 0, 10)
    assert [(e.seq, e.type) for e in events] == [(1, b"run.queued")]
    assert json.loads(events[0].data) == {"run_id": run.run_id, "input": "hello"}
    # The arq job is written in the same script: JSON in arq's layout, and its id in the queue.
    job = json.loads(await redis.get(store.keys.arq_job(run.run_id)))
    assert job["f"] == RUN_JOB and job["a"] == [session.session_id, run.run_id]
    assert await redis.zscore(store.keys.queue, run.run_id) is not None
    state = await store.get_session(session.session_id)
    assert state.active_run_id == run.run_id and state.runs[0].status == "queued" and state.status == "queued"


async def test_a_second_run_while_one_is_active_is_a_conflict(store: SessionStore, runs: RunLifecycle) -> None:
    session_id, started = await _started(runs)
    with pytest.raises(RunConflict) as info:
        await runs.queue_run(session_id, _run("again"))
    assert info.value.active_run_id == started.run_id


async def test_unknown_and_deleted_sessions(store: SessionStore, runs: RunLifecycle) -> None:
    with pytest.raises(SessionNotFound) as info:
        await store.get_session(new_session_id())
    assert not isinstance(info.value, SessionExpired)
    session_id, _ = await _started(runs)
    await runs.delete_session(await store.get_session(session_id))
    with pytest.raises(SessionExpired):
        await store.get_session(session_id)
    with pytest.raises(SessionExpired):
        await runs.queue_run(session_id, _run())
    with pytest.raises(SessionExpired):
        await store.stream_position(session_id)


async def test_start_appends_run_started_and_a_second_start_is_refused(store: SessionStore, runs: RunLifecycle) -> None:
    session_id, started = await _started(runs)
    assert started.status == "running" and started.attempt == 1 and started.started_seq == 2
    # arq may deliver the same job twice: the duplicate must not start the run again.
    assert await runs.start_run(session_id, started.run_id, started.run_id, token="lease-2") is None
    events = await store.read(session_id, 0, 10)
    assert [e.type for e in events] == [b"run.queued", b"run.started"]


async def test_starting_a_run_takes_its_job_out_of_arq_s_queue(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    # Picked again when its short in-progress mark lapses, the job would only meet the lease.
    session_id, run = await _started(runs)
    assert await redis.zscore(store.keys.queue, run.run_id) is None


async def test_appends_take_contiguous_ids_and_are_fenced_by_the_lease(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    session_id, run = await _started(runs)
    assert await RunLease(runs, session_id, run.run_id, "lease-1").append([_delta(run.run_id)] * 3) == 5
    with pytest.raises(LeaseLost):
        await RunLease(runs, session_id, run.run_id, "someone-else").append([_delta(run.run_id)])
    await runs.requeue_run(session_id, "lease-1")  # handed over: the lease is gone
    with pytest.raises(LeaseLost):
        await RunLease(runs, session_id, run.run_id, "lease-1").append([_delta(run.run_id)])
    assert [e.seq for e in await store.read(session_id, 0, 100)] == [1, 2, 3, 4, 5]


async def test_a_terminal_event_closes_the_run_frees_the_session_and_starts_retention(
    store: SessionStore, runs: RunLifecycle, redis: Redis, settings: Settings
) -> None:
    session_id, run = await _started(runs)
    await RunLease(runs, session_id, run.run_id, "lease-1").append(
        [_delta(run.run_id, "hi")], ending=_done(run.run_id, "hi")
    )
    state = await store.get_session(session_id)
    assert state.active_run_id is None and state.status == "idle" and state.last_event_id == 4
    assert state.runs[0].status == "completed" and state.runs[0].output == "hi" and state.runs[0].finished_seq == 4
    keys = store.keys.session(session_id)
    assert not await redis.exists(keys.lease) and await redis.zscore(store.keys.lease_checks, session_id) is None
    for key in (keys.meta, keys.runs, keys.events):
        assert 0 < await redis.ttl(key) <= settings.session_ttl_seconds
    # The tombstone outlives the session so an expired id answers 410.
    assert await redis.ttl(keys.gone) > settings.session_ttl_seconds
    # The session can take a follow-up run, which appends to the same stream and clears the TTL.
    assert await runs.queue_run(session_id, _run("more")) is Queued.STARTED
    assert (await store.stream_position(session_id))[0] == 5
    assert await redis.ttl(keys.events) == -1


async def test_a_completed_run_s_output_is_stored_once_and_read_back_with_its_event(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    session_id, run = await _started(runs)
    answer = 'Say "hi" \\ ünïcode'
    await RunLease(runs, session_id, run.run_id, "lease-1").append(
        [_delta(run.run_id, answer)], ending=_done(run.run_id, answer)
    )
    stored = (await redis.xrange(store.keys.session(session_id).events, "4-0", "4-0"))[0][1]
    assert stored[b"type"] == b"run.completed" and b'"output"' not in stored[b"data"]  # the record keeps it
    [completed] = [e for e in await store.read(session_id, 0, 100) if e.type == b"run.completed"]
    assert json.loads(completed.data) == {"run_id": run.run_id, "usage": {"output_tokens": 1}, "output": answer}
    assert (await store.get_session(session_id)).runs[0].output == answer


async def test_failure_is_recorded_with_its_error(store: SessionStore, runs: RunLifecycle) -> None:
    session_id, run = await _started(runs)
    failed = RunFailed(run_id=run.run_id, error=ErrorInfo(type="internal_error", message="boom"))
    await RunLease(runs, session_id, run.run_id, "lease-1").append([], ending=failed)
    record = (await store.get_session(session_id)).runs[0]
    assert record.status == "failed" and record.error is not None and record.error.message == "boom"


async def test_renew_lease_only_for_its_holder(store: SessionStore, runs: RunLifecycle, redis: Redis) -> None:
    session_id, _ = await _started(runs)
    assert await RunLease(runs, session_id, "r", "lease-1").renew() is Renewal.RENEWED
    assert await RunLease(runs, session_id, "r", "not-mine").renew() is Renewal.LOST


async def test_streams_are_trimmed_to_about_maxlen(redis: Redis, settings: Settings) -> None:
    store = SessionStore(redis, settings.model_copy(update={"stream_maxlen": 100}))
    runs = RunLifecycle(redis, settings.model_copy(update={"stream_maxlen": 100}))
    session_id, run = await _started(runs)
    for _ in range(10):
        await RunLease(runs, session_id, run.run_id, "lease-1").append([_delta(run.run_id)] * 50)
    first = await store.first_available(session_id)
    assert first is not None and first > 1
    position, active = await store.stream_position(session_id)
    assert position == 502 and active
    assert await redis.xlen(store.keys.session(session_id).events) < 300


async def test_partial_text_is_the_active_attempts_deltas(store: SessionStore, runs: RunLifecycle) -> None:
    session_id, run = await _started(runs)
    for text in ["Hel", "lo"]:
        await RunLease(runs, session_id, run.run_id, "lease-1").append([_delta(run.run_id, text)])
    assert await store.partial_text(session_id, run) == "Hello"


async def test_params_survive_the_lua_scripts_exactly(store: SessionStore, runs: RunLifecycle) -> None:
    session = _session()
    params = {"seed": 123456789012345678, "stop": [], "nested": {"list": [1, 2.5, "x"]}, "temperature": 0.7}
    run = RunRecord(run_id=new_run_id(), input="hi", model="scripted", params=params)
    await runs.queue_run(session.session_id, run, create=session)
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease")
    assert started is not None and started.run.params == params
    assert (await store.get_session(session.session_id)).runs[0].params == params


async def _expire(store: SessionStore, redis: Redis, session_id: str) -> None:
    """What a killed worker leaves behind: its lease, its deadline long past, its index entry due."""
    await redis.hset(store.keys.session(session_id).meta, "lease_until", "0")  # type: ignore[misc]
    await redis.zadd(store.keys.lease_checks, {session_id: 0})


async def _due(runs: RunLifecycle) -> list[str]:
    return [entry.member for entry in await runs.leases.due(0, 100)]


async def test_a_run_whose_lease_expired_is_requeued_once_and_taken_over_as_the_next_attempt(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    session_id, run = await _started(runs)
    # On one Redis the scripts keep the index exact: the session, at its lease's deadline.
    deadline = await redis.hget(store.keys.session(session_id).meta, "lease_until")  # type: ignore[misc]
    assert await redis.zscore(store.keys.lease_checks, session_id) == float(deadline)
    assert await _due(runs) == []
    await _expire(store, redis, session_id)
    assert await _due(runs) == [session_id]
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    assert (await runs.look(session_id)).outcome is Requeue.CLEARED  # another reaper finds nothing to do
    assert await redis.zcard(store.keys.queue) == 1  # the takeover's job (the first one left when it started)
    with pytest.raises(LeaseLost):  # the dead worker, were it only stalled, is fenced out
        await RunLease(runs, session_id, run.run_id, "lease-1").append([_delta(run.run_id)])
    [job_id] = [job.decode() for job in await redis.zrange(store.keys.queue, 0, -1)]
    taken = await runs.start_run(session_id, run.run_id, job_id, token="lease-2")
    assert taken is not None and taken.verdict is StartVerdict.RUN and taken.run.attempt == 2
    events = await store.read(session_id, 0, 100)
    assert [e.type for e in events] == [b"run.queued", b"run.started", b"run.retrying", b"run.started"]
    assert json.loads(events[2].data)["attempt"] == 2 and taken.run.started_seq == 4
    assert await runs.start_run(session_id, run.run_id, run.run_id, token="lease-3") is None  # the stale first job


async def test_a_holder_that_renews_after_its_deadline_keeps_its_run(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    # Redis was out of reach for longer than a lease; the worker came back before any reaper acted.
    session_id, run = await _started(runs)
    await _expire(store, redis, session_id)
    assert await RunLease(runs, session_id, run.run_id, "lease-1").renew() is Renewal.RENEWED
    look = await runs.look(session_id)  # a reaper that read the entry before the renewal
    seconds, _ = await redis.time()
    assert look.outcome is Requeue.RENEWED and look.lease_until is not None and look.lease_until > seconds * 1000
    await RunLease(runs, session_id, run.run_id, "lease-1").append([_delta(run.run_id)])  # not fenced


async def test_a_reaper_clears_index_entries_with_nothing_to_take_over(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    ended, run = await _started(runs)
    await RunLease(runs, ended, run.run_id, "lease-1").append([], ending=_done(run.run_id))
    for session_id in (ended, new_session_id()):  # a run that ended, a session that never existed
        await _expire(store, redis, session_id)
        assert (await runs.look(session_id)).outcome is Requeue.CLEARED


async def test_deleting_a_session_takes_its_run_s_lease_away(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    session_id, run = await _started(runs)
    await runs.delete_session(await store.get_session(session_id))
    assert await redis.zscore(store.keys.lease_checks, session_id) is None
    assert not await redis.exists(store.keys.session(session_id).lease)
    assert await RunLease(runs, session_id, run.run_id, "lease-1").renew() is Renewal.LOST  # its worker stops


async def test_a_hand_over_needs_the_current_lease(store: SessionStore, runs: RunLifecycle, redis: Redis) -> None:
    session_id, run = await _started(runs)
    assert await runs.requeue_run(session_id, "not-mine") is Requeue.NOT_HOLDER
    assert await runs.requeue_run(session_id, "lease-1") is Requeue.REQUEUED
    assert not await redis.exists(store.keys.session(session_id).lease)
    assert await runs.start_run(session_id, run.run_id, "any", token="lease-2") is not None


async def test_after_max_attempts_the_run_is_to_be_failed(redis: Redis, settings: Settings) -> None:
    store = SessionStore(redis, settings.model_copy(update={"max_attempts": 1}))
    runs = RunLifecycle(redis, settings.model_copy(update={"max_attempts": 1}))
    session_id, run = await _started(runs)
    await _expire(store, redis, session_id)
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    taken = await runs.start_run(session_id, run.run_id, "any", token="lease-2")
    assert taken is not None and taken.verdict is StartVerdict.EXHAUSTED
    assert [e.type for e in await store.read(session_id, 0, 100)] == [b"run.queued", b"run.started"]


async def test_cancel_ends_a_run_no_worker_holds_at_once(store: SessionStore, runs: RunLifecycle, redis: Redis) -> None:
    session = _session()
    with pytest.raises(SessionNotFound):
        await runs.cancel_run(session.session_id)
    run = _run()
    await runs.queue_run(session.session_id, run, create=session)
    assert await runs.cancel_run(session.session_id) == (Cancel.CANCELLED, run.run_id)
    assert await runs.cancel_run(session.session_id) == (Cancel.IDLE, None)
    assert [e.type for e in await store.read(session.session_id, 0, 10)] == [b"run.queued", b"run.cancelled"]
    assert await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease") is None  # its job, late
    record = (await store.get_session(session.session_id)).runs[0]
    assert record.status == "cancelled" and record.reason == "cancelled by request"


async def test_cancel_signals_the_worker_holding_the_run_once(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    session_id, run = await _started(runs)
    pubsub = redis.pubsub()
    await pubsub.subscribe(store.keys.cancel_channel)
    assert await runs.cancel_run(session_id) == (Cancel.SIGNALLED, run.run_id)
    assert await runs.cancel_run(session_id) == (Cancel.SIGNALLED, run.run_id)
    messages = []
    for _ in range(3):  # the subscribe confirmation, then at most one cancel
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            messages.append(message["data"])
    assert messages == [run.run_id.encode()]  # published once
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert await RunLease(runs, session_id, run.run_id, "lease-1").renew() is Renewal.CANCEL_PENDING
    # Its worker died before ending it; the run's next worker ends it instead of running it.
    await _expire(store, redis, session_id)
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    taken = await runs.start_run(session_id, run.run_id, "any", token="lease-2")
    assert taken is not None and taken.verdict is StartVerdict.CANCEL
    await RunLease(runs, session_id, run.run_id, "lease-2").append(
        [], ending=RunCancelled(run_id=run.run_id, reason="asked")
    )
    assert await runs.cancel_run(session_id) == (Cancel.IDLE, None)


async def test_enqueue_waits_in_line_and_starts_when_the_active_run_ends(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    session_id, run = await _started(runs)
    second, third = _run("second"), _run("third")
    assert await runs.queue_run(session_id, second, multitask="enqueue") is Queued.PENDING
    assert await runs.queue_run(session_id, third, multitask="enqueue") is Queued.PENDING
    assert not await redis.exists(store.keys.arq_job(second.run_id))  # no job until its turn
    await RunLease(runs, session_id, run.run_id, "lease-1").append([], ending=_done(run.run_id))
    state = await store.get_session(session_id)
    assert state.active_run_id == second.run_id and state.status == "queued"
    job = json.loads(await redis.get(store.keys.arq_job(second.run_id)))
    assert job == {"t": None, "f": "run_agent", "a": [session_id, second.run_id], "k": {}, "et": job["et"]}
    assert await redis.ttl(store.keys.session(session_id).events) == -1  # still working: no expiry
    started = await runs.start_run(session_id, second.run_id, second.run_id, token="lease-2")
    assert started is not None and started.run.attempt == 1


async def test_interrupt_cancels_the_active_run_and_supersedes_the_line(
    store: SessionStore, runs: RunLifecycle, redis: Redis
) -> None:
    session_id, run = await _started(runs)
    waiting, urgent, latest = _run("waiting"), _run("urgent"), _run("latest")
    await runs.queue_run(session_id, waiting, multitask="enqueue")
    assert await runs.queue_run(session_id, urgent, multitask="interrupt") is Queued.PENDING
    assert await runs.queue_run(session_id, latest, multitask="interrupt") is Queued.PENDING  # supersedes `urgent` too
    assert await RunLease(runs, session_id, run.run_id, "lease-1").renew() is Renewal.CANCEL_PENDING
    cancelled = RunCancelled(run_id=run.run_id, reason="cancelled by request")
    await RunLease(runs, session_id, run.run_id, "lease-1").append([], ending=cancelled)
    state = await store.get_session(session_id)
    assert state.active_run_id == latest.run_id
    statuses = {r.run_id: r.status for r in state.runs}
    assert statuses == {
        run.run_id: "cancelled",
        waiting.run_id: "cancelled",
        urgent.run_id: "cancelled",
        latest.run_id: "queued",
    }
    ended = [json.loads(e.data)["run_id"] for e in await store.read(session_id, 0, 100) if e.type == b"run.cancelled"]
    assert ended == [waiting.run_id, urgent.run_id, run.run_id]


async def test_hand_overs_do_not_count_as_failed_attempts(redis: Redis, settings: Settings) -> None:
    runs = RunLifecycle(redis, settings.model_copy(update={"max_attempts": 1}))
    session_id, run = await _started(runs)
    for attempt in range(2, 5):  # three deploys in a row
        assert await runs.requeue_run(session_id, f"lease-{attempt - 1}") is Requeue.REQUEUED
        taken = await runs.start_run(session_id, run.run_id, "any", token=f"lease-{attempt}")
        assert taken is not None and taken.verdict is StartVerdict.RUN and taken.run.attempt == attempt


async def test_an_append_sent_twice_with_one_id_lands_once(store: SessionStore, runs: RunLifecycle) -> None:
    session_id, run = await _started(runs)
    first = await RunLease(runs, session_id, run.run_id, "lease-1").append([_delta(run.run_id)], append_id="a1")
    again = await RunLease(runs, session_id, run.run_id, "lease-1").append([_delta(run.run_id)], append_id="a1")
    assert first == again == 3
    done = _done(run.run_id, "x")
    last = await RunLease(runs, session_id, run.run_id, "lease-1").append([], append_id="a2", ending=done)
    # The terminal append dropped the lease; its retry must still answer, not be fenced.
    assert await RunLease(runs, session_id, run.run_id, "lease-1").append([], append_id="a2", ending=done) == last
    assert [e.seq for e in await store.read(session_id, 0, 100)] == [1, 2, 3, 4]


async def test_the_tombstone_of_a_session_names_its_owner(store: SessionStore, runs: RunLifecycle) -> None:
    session_id, run = await _started(runs, tenant="acme")
    assert await store.session_owner(session_id) == "acme"
    await runs.delete_session(await store.get_session(session_id))
    assert await store.session_owner(session_id) == "acme"  # so another tenant is told 404, not 410
    ended, run = await _started(runs, tenant="acme")
    await RunLease(runs, ended, run.run_id, "lease-1").append([], ending=_done(run.run_id))
    assert await store.session_owner(ended) == "acme"
    assert await store.session_owner(new_session_id()) is None


async def _snapshot(redis: Redis, prefix: str) -> dict[bytes, bytes | None]:
    return {key: await redis.dump(key) async for key in redis.scan_iter(f"{prefix}:*")}


async def test_scripts_refused_by_a_full_redis_change_nothing(private_redis_url: str, settings: Settings) -> None:
    redis = Redis.from_url(private_redis_url)
    store = SessionStore(redis, settings.model_copy(update={"redis_url": private_redis_url}))
    runs = RunLifecycle(redis, settings.model_copy(update={"redis_url": private_redis_url}))
    running, run = await _started(runs)
    queued, waiting = _session(), _run()
    await runs.queue_run(queued.session_id, waiting, create=queued)
    await fill(redis)
    before = await _snapshot(redis, store.keys.prefix)
    refused: dict[str, Callable[[], Awaitable[object]]] = {
        "queue_run": lambda: runs.queue_run(running, _run("more"), multitask="enqueue"),
        "create": lambda: runs.queue_run(new_session_id(), _run(), create=_session()),
        "start_run": lambda: runs.start_run(queued.session_id, waiting.run_id, "job", token="lease"),
        "append": lambda: RunLease(runs, running, run.run_id, "lease-1").append([_delta(run.run_id)]),
        "end": lambda: RunLease(runs, running, run.run_id, "lease-1").append([], ending=_done(run.run_id)),
        "renew_lease": lambda: RunLease(runs, running, run.run_id, "lease-1").renew(),
        "cancel_run": lambda: runs.cancel_run(queued.session_id),
        "writable": runs.writable,
    }
    for name, call in refused.items():
        try:
            await call()
        except redis_errors.ResponseError as exc:  # Redis 6.2 says it inside a script's own error
            assert out_of_memory(exc), exc
        else:
            pytest.fail(f"{name} was not refused")
        assert await _snapshot(redis, store.keys.prefix) == before, name
    await redis.aclose()
