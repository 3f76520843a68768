"""shared/lifecycle.py and its Lua scripts (shared/lua/), run by fakeredis's Lua: queueing, the
multitask rules, starting, fenced and idempotent appends, renewals, takeovers, cancels, deletes.

What needs a real redis-server stays in tests/integration/test_store.py: a full Redis refusing a
script whole, and the arq job's exact JSON (fakeredis's cjson encodes an empty table as `[]`)."""

import json

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from tests.sessions import completion, delta_of, make_run, make_session, start_a_run
from tests.waiting import eventually
from tests.writes import AllWrites
from tokentail.gateway.access.ids import new_session_id
from tokentail.shared.errors import (
    InputNotPending,
    LeaseLost,
    RunConflict,
    RunNotFound,
    SessionExists,
    SessionExpired,
    SessionNotFound,
)
from tokentail.shared.events import ErrorInfo, InputRequired, RunCancelled, RunFailed
from tokentail.shared.jobs import RUN_JOB
from tokentail.shared.records import Question, RunRecord
from tokentail.shared.scripts.runs import Asked, Cancel, Look, Queued, Renewal, Requeue, StartVerdict
from tokentail.shared.settings import Settings
from tokentail.shared.store import SESSION_GONE, SessionStore
from tokentail.worker.run_writes import RunLease


def _lease(runs: AllWrites, session_id: str, run: RunRecord, token: str = "lease-1") -> RunLease:
    return RunLease(runs, session_id, run.run_id, token)


async def _types(store: SessionStore, session_id: str) -> list[bytes]:
    return [event.type for event in await store.read(session_id, 0, 1000)]


async def _published(pubsub: PubSub, count: int) -> list[bytes]:
    """The next `count` messages (after the subscription's confirmation), then proof of no other."""
    messages: list[bytes] = []

    async def received() -> bool:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.01)
        if message is not None:
            messages.append(message["data"])
        return len(messages) >= count

    await eventually(received, interval=0)
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05) is None
    return messages


async def _expire(store: SessionStore, redis: Redis, session_id: str) -> None:
    """What a killed worker leaves behind: its lease, its deadline long past, its index entry due."""
    await redis.hset(store.keys.session(session_id).meta, "lease_until", "0")  # type: ignore[misc]
    await redis.zadd(store.keys.lease_checks, {session_id: 0})


# -- queueing -----------------------------------------------------------------------------------


async def test_queue_run_creates_the_session_records_the_run_and_queues_its_job(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session, run = make_session(), make_run()
    assert await runs.queue_run(session.session_id, run, create=session) is Queued.STARTED
    events = await store.read(session.session_id, 0, 10)
    assert [(e.seq, e.type) for e in events] == [(1, b"run.queued")]
    assert json.loads(events[0].data) == {"run_id": run.run_id, "input": "hello"}
    job = json.loads(await redis.get(store.keys.arq_job(run.run_id)))
    assert job["f"] == RUN_JOB and job["a"] == [session.session_id, run.run_id]
    assert await redis.zscore(store.keys.queue, run.run_id) is not None
    state = await store.get_session(session.session_id)
    assert state.active_run_id == run.run_id and state.runs[0].status == "queued" and state.status == "queued"


async def test_creating_a_session_that_exists_is_refused_unless_only_if_missing(
    store: SessionStore, runs: AllWrites
) -> None:
    session = make_session()
    await runs.queue_run(session.session_id, make_run(), create=session)
    with pytest.raises(SessionExists):
        await runs.queue_run(session.session_id, make_run(), create=session)
    assert not await runs.create_session(session)  # nothing changed either
    # A chat's turn: made if missing, else queued on the session there is (behind its active run).
    second = make_run()
    await runs.queue_run(session.session_id, second, multitask="enqueue", create=session, if_missing=True)
    state = await store.get_session(session.session_id)
    assert [run.run_id for run in state.runs][-1] == second.run_id and second.queued_seq == state.last_event_id
    fresh = make_session()
    third = make_run()
    await runs.queue_run(fresh.session_id, third, create=fresh, if_missing=True)
    assert (await store.get_session(fresh.session_id)).active_run_id == third.run_id


async def test_a_gone_session_is_not_made_again(store: SessionStore, runs: AllWrites) -> None:
    session = make_session()
    await runs.create_session(session)
    await runs.delete_session(await store.get_session(session.session_id))
    with pytest.raises(SessionExpired):
        await runs.create_session(session)
    with pytest.raises(SessionExpired):
        await runs.queue_run(session.session_id, make_run(), create=session, if_missing=True)


async def test_a_session_created_without_a_run_is_idle_and_expires_unless_used(
    store: SessionStore, runs: AllWrites, redis: Redis, settings: Settings
) -> None:
    session = make_session("acme")
    await runs.create_session(session)
    state = await store.get_session(session.session_id)
    assert state.status == "idle" and state.runs == [] and state.last_event_id == 0
    keys = store.keys.session(session.session_id)
    assert 0 < await redis.ttl(keys.meta) <= settings.session_ttl_seconds
    assert await store.session_owner(session.session_id) == "acme"
    assert await runs.queue_run(session.session_id, make_run()) is Queued.STARTED
    assert await redis.ttl(keys.meta) == -1  # work to do: no expiry


async def test_runs_on_unknown_or_deleted_sessions_are_refused(store: SessionStore, runs: AllWrites) -> None:
    with pytest.raises(SessionNotFound) as missing:
        await runs.queue_run(new_session_id(), make_run())
    assert not isinstance(missing.value, SessionExpired)
    session_id, _ = await start_a_run(runs)
    await runs.delete_session(await store.get_session(session_id))
    with pytest.raises(SessionExpired):
        await runs.queue_run(session_id, make_run())
    with pytest.raises(SessionExpired):
        await runs.cancel_run(session_id)


async def test_a_second_run_while_one_is_active_is_a_conflict(store: SessionStore, runs: AllWrites) -> None:
    session_id, started = await start_a_run(runs)
    with pytest.raises(RunConflict) as info:
        await runs.queue_run(session_id, make_run("again"))
    assert info.value.active_run_id == started.run_id
    assert await _types(store, session_id) == [b"run.queued", b"run.started"]  # nothing recorded


async def test_enqueue_waits_in_line_and_starts_when_the_active_run_ends(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    second, third = make_run("second"), make_run("third")
    assert await runs.queue_run(session_id, second, multitask="enqueue") is Queued.PENDING
    assert await runs.queue_run(session_id, third, multitask="enqueue") is Queued.PENDING
    assert not await redis.exists(store.keys.arq_job(second.run_id))  # no job until its turn
    await _lease(runs, session_id, run).append([], ending=completion(run.run_id))
    state = await store.get_session(session_id)
    assert state.active_run_id == second.run_id and state.status == "queued"
    assert json.loads(await redis.get(store.keys.arq_job(second.run_id)))["a"] == [session_id, second.run_id]
    assert not await redis.exists(store.keys.arq_job(third.run_id))
    assert await redis.ttl(store.keys.session(session_id).events) == -1  # still working: no expiry
    started = await runs.start_run(session_id, second.run_id, second.run_id, token="lease-2")
    assert started is not None and started.run.attempt == 1


async def test_interrupt_cancels_the_active_run_and_supersedes_the_line(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    waiting, urgent, latest = make_run("waiting"), make_run("urgent"), make_run("latest")
    await runs.queue_run(session_id, waiting, multitask="enqueue")
    assert await runs.queue_run(session_id, urgent, multitask="interrupt") is Queued.PENDING
    assert await runs.queue_run(session_id, latest, multitask="interrupt") is Queued.PENDING  # supersedes `urgent` too
    assert await _lease(runs, session_id, run).renew() is Renewal.CANCEL_PENDING
    cancelled = RunCancelled(run_id=run.run_id, reason="cancelled by request")
    await _lease(runs, session_id, run).append([], ending=cancelled)
    state = await store.get_session(session_id)
    assert state.active_run_id == latest.run_id
    assert {r.run_id: r.status for r in state.runs} == {
        run.run_id: "cancelled",
        waiting.run_id: "cancelled",
        urgent.run_id: "cancelled",
        latest.run_id: "queued",
    }
    ended = [json.loads(e.data)["run_id"] for e in await store.read(session_id, 0, 100) if e.type == b"run.cancelled"]
    assert ended == [waiting.run_id, urgent.run_id, run.run_id]


async def test_interrupting_a_run_no_worker_holds_starts_the_new_one_at_once(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session, first = make_session(), make_run("first")
    await runs.queue_run(session.session_id, first, create=session)
    second = make_run("second")
    assert await runs.queue_run(session.session_id, second, multitask="interrupt") is Queued.STARTED
    state = await store.get_session(session.session_id)
    assert state.active_run_id == second.run_id
    assert [r.status for r in state.runs] == ["cancelled", "queued"]
    assert await redis.exists(store.keys.arq_job(second.run_id))
    assert await runs.start_run(session.session_id, first.run_id, first.run_id, token="late") is None  # its job


async def test_params_survive_the_lua_scripts_exactly(store: SessionStore, runs: AllWrites) -> None:
    # cjson would turn [] into {} (fakeredis's into []) and large integers into floats: params travel as a string.
    session = make_session()
    params = {"seed": 123456789012345678, "stop": [], "none": {}, "nested": {"list": [1, 2.5, "x"]}}
    run = RunRecord(run_id=make_run().run_id, input="hi", model="scripted", params=params)
    await runs.queue_run(session.session_id, run, create=session)
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease")
    assert started is not None and started.run.params == params
    assert (await store.get_session(session.session_id)).runs[0].params == params


# -- starting -----------------------------------------------------------------------------------


async def test_start_appends_run_started_and_a_second_start_is_refused(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, started = await start_a_run(runs)
    assert started.status == "running" and started.attempt == 1 and started.started_seq == 2
    assert await redis.zscore(store.keys.queue, started.run_id) is None  # its job left arq's queue
    assert await redis.get(store.keys.session(session_id).lease) == b"lease-1"
    # arq may deliver the same job twice: the duplicate must not start the run again.
    assert await runs.start_run(session_id, started.run_id, started.run_id, token="lease-2") is None
    assert await _types(store, session_id) == [b"run.queued", b"run.started"]


async def test_only_the_active_run_of_an_existing_session_starts(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    await _lease(runs, session_id, run).append([], ending=completion(run.run_id))
    assert await runs.start_run(session_id, run.run_id, "late-job", token="lease-2") is None  # ended
    assert await runs.start_run(session_id, "r_other", "job", token="lease-2") is None  # not its run
    assert await runs.start_run(new_session_id(), "r_x", "job", token="lease-2") is None  # no session


async def test_after_max_attempts_the_run_is_to_be_failed(redis: Redis, settings: Settings) -> None:
    settings = settings.model_copy(update={"max_attempts": 1})
    store, runs = SessionStore(redis, settings), AllWrites(redis, settings)
    session_id, run = await start_a_run(runs)
    await _expire(store, redis, session_id)
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    taken = await runs.start_run(session_id, run.run_id, "any", token="lease-2")
    assert taken is not None and taken.verdict is StartVerdict.EXHAUSTED
    assert await _types(store, session_id) == [b"run.queued", b"run.started"]  # its worker writes run.failed


# -- appending ----------------------------------------------------------------------------------


async def test_appends_take_contiguous_ids_and_are_fenced_by_the_lease(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    assert await _lease(runs, session_id, run).append([delta_of(run.run_id)] * 3) == 5
    with pytest.raises(LeaseLost, match="FENCED"):
        await _lease(runs, session_id, run, "someone-else").append([delta_of(run.run_id)])
    assert (await runs.requeue(session_id, "lease-1")).outcome is Requeue.REQUEUED  # handed over: the lease is gone
    with pytest.raises(LeaseLost):
        await _lease(runs, session_id, run).append([delta_of(run.run_id)])
    assert [e.seq for e in await store.read(session_id, 0, 100)] == [1, 2, 3, 4, 5]


async def test_a_run_that_ended_takes_no_more_appends(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    await _lease(runs, session_id, run).append([], ending=completion(run.run_id))
    with pytest.raises(LeaseLost):
        await _lease(runs, session_id, run).append([delta_of(run.run_id)])
    with pytest.raises(LeaseLost):  # nor a second ending
        await _lease(runs, session_id, run).append([], ending=completion(run.run_id))
    assert await _types(store, session_id) == [b"run.queued", b"run.started", b"run.completed"]


async def test_an_append_sent_twice_with_one_id_lands_once(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    lease = _lease(runs, session_id, run)
    assert await lease.append([delta_of(run.run_id)], append_id="a1") == 3
    assert await lease.append([delta_of(run.run_id)], append_id="a1") == 3
    assert await lease.append([delta_of(run.run_id)], append_id="a2") == 4
    done = completion(run.run_id, "x")
    last = await lease.append([], append_id="a3", ending=done)
    # The terminal append dropped the lease; its retry must still answer, not be fenced.
    assert await lease.append([], append_id="a3", ending=done) == last == 5
    assert [e.seq for e in await store.read(session_id, 0, 100)] == [1, 2, 3, 4, 5]


async def test_a_terminal_event_closes_the_run_frees_the_session_and_starts_retention(
    store: SessionStore, runs: AllWrites, redis: Redis, settings: Settings
) -> None:
    session_id, run = await start_a_run(runs)
    await _lease(runs, session_id, run).append([delta_of(run.run_id, "hi")], ending=completion(run.run_id, "hi"))
    state = await store.get_session(session_id)
    assert state.active_run_id is None and state.status == "idle" and state.last_event_id == 4
    assert state.runs[0].status == "completed" and state.runs[0].output == "hi" and state.runs[0].finished_seq == 4
    keys = store.keys.session(session_id)
    assert not await redis.exists(keys.lease) and await redis.zscore(store.keys.lease_checks, session_id) is None
    for key in (keys.meta, keys.runs, keys.events):
        assert 0 < await redis.ttl(key) <= settings.session_ttl_seconds
    assert await redis.ttl(keys.gone) > settings.session_ttl_seconds  # an expired id answers 410
    # A follow-up run appends to the same stream and clears the TTL.
    assert await runs.queue_run(session_id, make_run("more")) is Queued.STARTED
    assert (await store.stream_position(session_id))[0] == 5
    assert await redis.ttl(keys.events) == -1


async def test_failure_is_recorded_with_its_error(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    failed = RunFailed(run_id=run.run_id, error=ErrorInfo(type="internal_error", message="boom"))
    await _lease(runs, session_id, run).append([], ending=failed)
    record = (await store.get_session(session_id)).runs[0]
    assert record.status == "failed" and record.error is not None and record.error.message == "boom"


async def test_every_event_is_published_on_the_session_s_channel(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    channel = store.keys.session(session_id).events
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(channel)
        await _lease(runs, session_id, run).append([delta_of(run.run_id, "a"), delta_of(run.run_id, "b")])
        published = [message.split(b" ", 3) for message in await _published(pubsub, 2)]
    assert [(seq, kind) for seq, _, kind, _ in published] == [(b"3", b"message.delta"), (b"4", b"message.delta")]
    assert [json.loads(data)["text"] for *_, data in published] == ["a", "b"]


# -- leases: renewals, takeovers, hand-overs ---------------------------------------------------


async def test_a_renewal_answers_its_holder_only(store: SessionStore, runs: AllWrites, redis: Redis) -> None:
    session_id, run = await start_a_run(runs)
    meta = store.keys.session(session_id).meta
    await redis.hset(meta, "lease_until", "1")  # type: ignore[misc]
    assert await _lease(runs, session_id, run).renew() is Renewal.RENEWED
    deadline = int(await redis.hget(meta, "lease_until"))  # type: ignore[misc]
    seconds, _ = await redis.time()
    assert deadline > seconds * 1000  # pushed a lease past now
    assert await redis.zscore(store.keys.lease_checks, session_id) == deadline  # the index follows
    assert await _lease(runs, session_id, run, "not-mine").renew() is Renewal.LOST
    await _lease(runs, session_id, run).append([], ending=completion(run.run_id))
    assert await _lease(runs, session_id, run).renew() is Renewal.LOST  # ended


async def test_a_run_whose_lease_expired_is_requeued_once_and_taken_over_as_the_next_attempt(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    assert await runs.leases.due(0, 100) == []  # the index holds it at its lease's deadline
    await _expire(store, redis, session_id)
    assert [entry.member for entry in await runs.leases.due(0, 100)] == [session_id]
    assert await runs.look(session_id) == Look(Requeue.REQUEUED)
    assert (await runs.look(session_id)).outcome is Requeue.CLEARED  # another reaper finds nothing to do
    with pytest.raises(LeaseLost):  # the dead worker, were it only stalled, is fenced out
        await _lease(runs, session_id, run).append([delta_of(run.run_id)])
    [job_id] = [job.decode() for job in await redis.zrange(store.keys.queue, 0, -1)]
    assert job_id.startswith(run.run_id + ".")  # a job of its own: the first one's id may still be marked
    taken = await runs.start_run(session_id, run.run_id, job_id, token="lease-2")
    assert taken is not None and taken.verdict is StartVerdict.RUN and taken.run.attempt == 2
    events = await store.read(session_id, 0, 100)
    assert [e.type for e in events] == [b"run.queued", b"run.started", b"run.retrying", b"run.started"]
    assert json.loads(events[2].data)["attempt"] == 2 and taken.run.started_seq == 4
    assert await runs.start_run(session_id, run.run_id, run.run_id, token="lease-3") is None  # the stale first job


async def test_a_holder_that_renews_after_its_deadline_keeps_its_run(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    # Redis was out of reach for longer than a lease; the worker came back before any reaper acted.
    session_id, run = await start_a_run(runs)
    await _expire(store, redis, session_id)
    assert await _lease(runs, session_id, run).renew() is Renewal.RENEWED
    look = await runs.look(session_id)  # a reaper that read the entry before the renewal
    seconds, _ = await redis.time()
    assert look.outcome is Requeue.RENEWED and look.lease_until is not None and look.lease_until > seconds * 1000
    await _lease(runs, session_id, run).append([delta_of(run.run_id)])  # not fenced


async def test_a_reaper_clears_index_entries_with_nothing_to_take_over(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    ended, run = await start_a_run(runs)
    await _lease(runs, ended, run).append([], ending=completion(run.run_id))
    queued = make_session()
    await runs.queue_run(queued.session_id, make_run(), create=queued)  # no lease: its job is queued already
    for session_id in (ended, new_session_id(), queued.session_id):  # ended, never existed, not started
        await _expire(store, redis, session_id)
        assert (await runs.look(session_id)).outcome is Requeue.CLEARED  # the reaper drops the entry


async def test_a_hand_over_needs_the_current_lease_and_costs_no_attempt(redis: Redis, settings: Settings) -> None:
    runs = AllWrites(redis, settings.model_copy(update={"max_attempts": 1}))
    session_id, run = await start_a_run(runs)
    assert (await runs.requeue(session_id, "not-mine")).outcome is Requeue.NOT_HOLDER
    for attempt in range(2, 5):  # three deploys in a row
        assert await _lease(runs, session_id, run, f"lease-{attempt - 1}").hand_over() is Requeue.REQUEUED
        taken = await runs.start_run(session_id, run.run_id, "any", token=f"lease-{attempt}")
        assert taken is not None and taken.verdict is StartVerdict.RUN and taken.run.attempt == attempt


# -- cancels and deletes -----------------------------------------------------------------------


async def test_cancel_ends_a_run_no_worker_holds_at_once(store: SessionStore, runs: AllWrites) -> None:
    session = make_session()
    with pytest.raises(SessionNotFound):
        await runs.cancel_run(session.session_id)
    run = make_run()
    await runs.queue_run(session.session_id, run, create=session)
    assert await runs.cancel_run(session.session_id) == (Cancel.CANCELLED, run.run_id)
    assert await runs.cancel_run(session.session_id) == (Cancel.IDLE, None)
    assert await _types(store, session.session_id) == [b"run.queued", b"run.cancelled"]
    assert await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease") is None  # its job, late
    record = (await store.get_session(session.session_id)).runs[0]
    assert record.status == "cancelled" and record.reason == "cancelled by request"


async def test_cancel_signals_the_worker_holding_the_run_once(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(store.keys.cancel_channel)
        assert await runs.cancel_run(session_id) == (Cancel.SIGNALLED, run.run_id)
        assert await runs.cancel_run(session_id) == (Cancel.SIGNALLED, run.run_id)
        assert await _published(pubsub, 1) == [run.run_id.encode()]  # once
    assert await _lease(runs, session_id, run).renew() is Renewal.CANCEL_PENDING
    # Its worker died before ending it; the run's next worker ends it instead of running it.
    await _expire(store, redis, session_id)
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    taken = await runs.start_run(session_id, run.run_id, "any", token="lease-2")
    assert taken is not None and taken.verdict is StartVerdict.CANCEL
    await _lease(runs, session_id, run, "lease-2").append([], ending=RunCancelled(run_id=run.run_id, reason="asked"))
    assert await runs.cancel_run(session_id) == (Cancel.IDLE, None)


async def test_a_cancel_naming_a_run_cancels_it_only_while_it_is_the_active_one(
    store: SessionStore, runs: AllWrites
) -> None:
    session_id, first = await start_a_run(runs)
    second = make_run("next")
    await runs.queue_run(session_id, second, multitask="enqueue")
    with pytest.raises(RunNotFound):
        await runs.cancel_run(session_id, "r_notinthissess")
    assert await runs.cancel_run(session_id, second.run_id) == (Cancel.NOT_ACTIVE, second.run_id)  # in line
    await _lease(runs, session_id, first).append([], ending=completion(first.run_id))  # the second starts
    # A stop meant for the first run, arriving now: it has ended, and the run after it goes on.
    assert await runs.cancel_run(session_id, first.run_id) == (Cancel.NOT_ACTIVE, first.run_id)
    assert (await store.get_session(session_id)).active_run_id == second.run_id
    assert await runs.cancel_run(session_id, second.run_id) == (Cancel.CANCELLED, second.run_id)  # no worker
    assert await runs.cancel_run(session_id) == (Cancel.IDLE, None)


async def test_a_cancel_naming_a_segment_cancels_the_run_only_while_it_is_in_it(
    store: SessionStore, runs: AllWrites
) -> None:
    """A Responses API response is a run's segment: its part after the run's k-th answer."""
    session_id, run = await start_a_run(runs)
    question = _question()
    assert await runs.cancel_run(session_id, run.run_id, segment=1) == (Cancel.NOT_ACTIVE, run.run_id)  # not yet
    lease = _lease(runs, session_id, run)
    assert await lease.ask([question], _required(run.run_id, question), None) is Asked.WAITING
    # Segment 0 ended at its question: a stream of it that ends now leaves the question to be answered...
    assert await runs.cancel_run(session_id, run.run_id, segment=0, ended_at_question=True) == (
        Cancel.NOT_ACTIVE,
        run.run_id,
    )
    waiting = (await store.get_session(session_id)).runs[0]
    assert waiting.status == "waiting"
    await runs.answer(session_id, waiting, "in_1", "Ada")
    # ...and once answered, segment 0 is over for good: the run goes on as segment 1.
    assert await runs.cancel_run(session_id, run.run_id, segment=0) == (Cancel.NOT_ACTIVE, run.run_id)
    assert (await store.get_session(session_id)).runs[0].status == "queued"
    assert await runs.cancel_run(session_id, run.run_id, segment=1, ended_at_question=True) == (
        Cancel.CANCELLED,
        run.run_id,
    )


async def test_an_explicit_cancel_of_the_segment_that_asked_ends_the_waiting_run(
    store: SessionStore, runs: AllWrites
) -> None:
    session_id, run = await start_a_run(runs)
    question = _question()
    assert await _lease(runs, session_id, run).ask([question], _required(run.run_id, question), None) is Asked.WAITING
    assert await runs.cancel_run(session_id, run.run_id, segment=0) == (Cancel.CANCELLED, run.run_id)
    assert (await store.get_session(session_id)).runs[0].status == "cancelled"


async def test_deleting_a_session_fences_its_run_and_tells_its_followers(
    store: SessionStore, runs: AllWrites, redis: Redis, settings: Settings
) -> None:
    session_id, run = await start_a_run(runs, tenant="acme")
    keys = store.keys.session(session_id)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(keys.events)
        await runs.delete_session(await store.get_session(session_id))
        assert await _published(pubsub, 1) == [SESSION_GONE]
    assert not await redis.exists(keys.meta, keys.runs, keys.events, keys.lease, keys.pending)
    assert await redis.zscore(store.keys.lease_checks, session_id) is None
    assert 0 < await redis.ttl(keys.gone) <= settings.tombstone_ttl_seconds
    assert await store.session_owner(session_id) == "acme"  # so another tenant is told 404, not 410
    assert await _lease(runs, session_id, run).renew() is Renewal.LOST  # its worker stops
    with pytest.raises(LeaseLost):
        await _lease(runs, session_id, run).append([delta_of(run.run_id)])
    assert (await runs.look(session_id)).outcome is Requeue.CLEARED


# -- the queue on a Redis of its own -----------------------------------------------------------


@pytest.fixture
async def split(redis: Redis, settings: Settings) -> tuple[SessionStore, AllWrites, fakeredis.FakeAsyncRedis]:
    """Sessions on `redis`, the queue and the leases index on a second (fake) Redis."""
    settings = settings.model_copy(update={"queue_redis_url": "redis://queue.invalid:6379/0"})
    queue = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return SessionStore(redis, settings), AllWrites(redis, settings, queue=queue), queue


async def _queued_jobs(store: SessionStore, queue: Redis) -> list[str]:
    return [job.decode() for job in await queue.zrange(store.keys.queue, 0, -1)]


async def test_with_the_queue_apart_a_run_goes_through_the_session_s_outbox(
    split: tuple[SessionStore, AllWrites, fakeredis.FakeAsyncRedis], redis: Redis
) -> None:
    store, runs, queue = split
    session, run = make_session(), make_run()
    assert await runs.queue_run(session.session_id, run, create=session) is Queued.STARTED
    assert not await redis.exists(store.keys.queue)  # nothing of the queue's on the sessions' Redis
    assert json.loads(await queue.get(store.keys.arq_job(run.run_id)))["a"] == [session.session_id, run.run_id]
    assert await _queued_jobs(store, queue) == [run.run_id]
    assert await runs.leases.due(0, 10) == []  # the intent went once the job was pushed
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1")
    assert started is not None and started.verdict is StartVerdict.RUN
    assert await _queued_jobs(store, queue) == []
    assert not await redis.hexists(store.keys.session(session.session_id).meta, "dispatch")  # type: ignore[misc]


async def test_with_the_queue_apart_a_gateway_that_dies_before_the_push_loses_no_run(
    split: tuple[SessionStore, AllWrites, fakeredis.FakeAsyncRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, runs, queue = split

    async def dies(*args: object) -> None:
        raise ConnectionError("the gateway died here")

    session, run = make_session(), make_run()
    with monkeypatch.context() as patch:
        patch.setattr(runs.leases, "push", dies)
        with pytest.raises(ConnectionError):
            await runs.queue_run(session.session_id, run, create=session)
    assert await _queued_jobs(store, queue) == []  # recorded, never queued...
    [intent] = await queue.zrange(store.keys.lease_checks, 0, -1)  # ...but its intent is in the index
    assert intent.decode().startswith(session.session_id + " ")
    assert (await runs.look(session.session_id)).outcome is Requeue.PUSHED  # what a reaper does with it
    assert await _queued_jobs(store, queue) == [run.run_id]
    assert await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1") is not None


# -- questions ----------------------------------------------------------------------------------


def _question(input_id: str = "in_1", expires_at: float | None = None) -> Question:
    return Question(
        input_id=input_id, kind="text", prompt="Name?", answer_schema={"type": "string"}, expires_at=expires_at
    )


def _required(run_id: str, question: Question) -> InputRequired:
    return InputRequired(
        run_id=run_id, input_id=question.input_id, kind="text", prompt=question.prompt, answer_schema={"type": "string"}
    )


async def test_a_question_gives_the_run_up_and_one_answer_queues_it_again(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    question = _question()
    lease = _lease(runs, session_id, run)
    assert await lease.ask([question], _required(run.run_id, question), None) is Asked.WAITING
    waiting = (await store.get_session(session_id)).runs[0]
    assert waiting.status == "waiting" and waiting.waiting_for == "in_1" and waiting.question == question
    assert (await store.get_session(session_id)).status == "waiting_for_input"
    assert not await redis.exists(store.keys.session(session_id).lease)  # no worker holds it
    assert await runs.leases.due(0, 100) == [] and await runs.look(session_id) == Look(Requeue.CLEARED)
    with pytest.raises(LeaseLost):  # the worker that asked writes no more
        await lease.append([delta_of(run.run_id)])

    seq = await runs.answer(session_id, waiting, "in_1", "Ada")
    with pytest.raises(InputNotPending):  # the first answer wins
        await runs.answer(session_id, waiting, "in_1", "Bob")
    answered = (await store.get_session(session_id)).runs[0]
    assert answered.status == "queued" and answered.answers == {"in_1": "Ada"} and answered.resumes == 1
    [job_id] = [job.decode() for job in await redis.zrange(store.keys.queue, 0, -1)]
    taken = await runs.start_run(session_id, run.run_id, job_id, token="lease-2")
    assert taken is not None and taken.verdict is StartVerdict.RUN
    events = await store.read(session_id, 0, 100)
    assert [e.type for e in events] == [
        b"run.queued",
        b"run.started",
        b"input.required",
        b"input.received",
        b"run.started",
    ]
    assert json.loads(events[3].data) == {"run_id": run.run_id, "input_id": "in_1", "answer": "Ada"} and seq == 4


async def test_an_answered_question_resumes_the_same_attempt_and_only_a_takeover_counts_one(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    # run.started's attempt rose with every answer (1, 2, 3 with no crash): a UI took each for a retry.
    session_id, run = await start_a_run(runs)
    for number in (1, 2):
        asked = [_question(f"in_{n}") for n in range(1, number + 1)]
        lease = _lease(runs, session_id, run, f"lease-{number}")
        assert await lease.ask(asked, _required(run.run_id, asked[-1]), None) is Asked.WAITING
        await runs.answer(session_id, (await store.get_session(session_id)).runs[0], f"in_{number}", "x")
        [job_id] = [job.decode() for job in await redis.zrange(store.keys.queue, 0, -1)]
        resumed = await runs.start_run(session_id, run.run_id, job_id, token=f"lease-{number + 1}")
        assert resumed is not None and resumed.run.attempt == 1 and resumed.run.started_as == "resume"
    await _expire(store, redis, session_id)  # its worker dies, and a reaper requeues it
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    [job_id] = [job.decode() for job in await redis.zrange(store.keys.queue, 0, -1)]
    taken = await runs.start_run(session_id, run.run_id, job_id, token="lease-4")
    assert taken is not None and taken.run.attempt == 2 and taken.run.started_as == "takeover"
    starts = [
        json.loads(e.data) for e in await store.read(session_id, 0, 100) if e.type in (b"run.started", b"run.retrying")
    ]
    assert [(start["attempt"], start.get("reason")) for start in starts] == [
        (1, "start"), (1, "resume"), (1, "resume"), (2, "the worker running attempt 1 stopped"), (2, "takeover"),
    ]  # fmt: skip


async def test_resumes_do_not_count_as_attempts(redis: Redis, settings: Settings) -> None:
    settings = settings.model_copy(update={"max_attempts": 1})
    store, runs = SessionStore(redis, settings), AllWrites(redis, settings)
    session_id, run = await start_a_run(runs)
    for number, token in ((1, "lease-1"), (2, "lease-2")):
        asked = [_question(f"in_{n}") for n in range(1, number + 1)]
        assert (
            await _lease(runs, session_id, run, token).ask(asked, _required(run.run_id, asked[-1]), None)
            is Asked.WAITING
        )
        waiting = (await store.get_session(session_id)).runs[0]
        await runs.answer(session_id, waiting, f"in_{number}", "x")
        [job_id] = [job.decode() for job in await redis.zrange(store.keys.queue, 0, -1)]
        taken = await runs.start_run(session_id, run.run_id, job_id, token=f"lease-{number + 1}")
        assert taken is not None and taken.verdict is StartVerdict.RUN


async def test_a_cancel_pending_as_the_run_asks_wins(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    assert await runs.cancel_run(session_id) == (Cancel.SIGNALLED, run.run_id)
    question = _question()
    assert await _lease(runs, session_id, run).ask([question], _required(run.run_id, question), None) is Asked.CANCEL
    assert (await store.get_session(session_id)).runs[0].status == "running"  # its worker writes run.cancelled


async def test_an_expired_question_fails_the_run_or_takes_its_default(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    for default in (False, True):
        session_id, run = await start_a_run(runs)
        question = _question(expires_at=1.0)  # long past
        expiry = (
            json.dumps({"in_1": "nobody"}),
            json.dumps({"run_id": run.run_id, "input_id": "in_1", "answer": "nobody"}),
        )
        await _lease(runs, session_id, run).ask(
            [question], _required(run.run_id, question), expiry if default else None
        )
        assert [entry.member for entry in await runs.leases.due(0, 100)] == [session_id]  # due at its deadline
        ended = await runs.look(session_id)
        record = (await store.get_session(session_id)).runs[0]
        if default:
            assert (
                ended.outcome is Requeue.REQUEUED and record.status == "queued" and record.answers == {"in_1": "nobody"}
            )
        else:
            assert ended.outcome is Requeue.CLEARED and record.status == "failed"
            assert record.error is not None and record.error.type == "input_expired"
        await redis.delete(store.keys.lease_checks)


async def test_a_question_not_yet_due_is_looked_at_again_at_its_deadline(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    question = _question(expires_at=4_000_000_000.0)
    await _lease(runs, session_id, run).ask([question], _required(run.run_id, question), None)
    assert await runs.look(session_id) == Look(Requeue.RENEWED, 4_000_000_000_000)
