"""The gateway's commands (gateway/commands/writes.py, on shared/store/writes.py) and their Lua scripts
(shared/store/lua/), run by fakeredis's Lua: creating sessions, queueing runs and the multitask rules,
cancels and deletes.

What needs a real redis-server stays in tests/integration/test_store.py: a full Redis refusing a
script whole, and the arq job's exact JSON (fakeredis's cjson encodes an empty table as `[]`)."""

import json

import pytest
from redis.asyncio import Redis

from tests.support.sessions import completion, delta_of, make_run, make_session, start_a_run
from tests.support.write_side import a_question, event_types, expire_lease, lease_of, next_published
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_session_id
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.jobs import RUN_JOB
from tokentail.shared.store.reads import SESSION_GONE, SessionStore
from tokentail.shared.store.scripts.runs import Asked, Cancel, Queued, Renewal, Requeue, StartVerdict
from tokentail.shared.vocabulary.errors import (
    LeaseLost,
    RunConflict,
    RunNotFound,
    SessionExists,
    SessionExpired,
    SessionNotFound,
)
from tokentail.shared.vocabulary.events import RunCancelled
from tokentail.shared.vocabulary.records import transcript

# -- queueing -----------------------------------------------------------------------------------


async def test_queue_run_creates_the_session_records_the_run_and_queues_its_job(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session, run = make_session(), make_run()
    assert (await runs.queue_run(session.session_id, run, create=session)).queued is Queued.STARTED
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
    assert (await runs.queue_run(session.session_id, make_run())).queued is Queued.STARTED
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
    assert await event_types(store, session_id) == [b"run.queued", b"run.started"]  # nothing recorded


async def test_enqueue_waits_in_line_and_starts_when_the_active_run_ends(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    second, third = make_run("second"), make_run("third")
    assert (await runs.queue_run(session_id, second, multitask="enqueue")).queued is Queued.PENDING
    assert (await runs.queue_run(session_id, third, multitask="enqueue")).queued is Queued.PENDING
    assert not await redis.exists(store.keys.arq_job(second.run_id))  # no job until its turn
    await lease_of(runs, session_id, run).append([], ending=completion(run.run_id))
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
    assert (await runs.queue_run(session_id, urgent, multitask="interrupt")).queued is Queued.PENDING
    assert (
        await runs.queue_run(session_id, latest, multitask="interrupt")
    ).queued is Queued.PENDING  # supersedes `urgent` too
    assert await lease_of(runs, session_id, run).renew() is Renewal.CANCEL_PENDING
    cancelled = RunCancelled(run_id=run.run_id, reason="cancelled by request")
    await lease_of(runs, session_id, run).append([], ending=cancelled)
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
    assert (await runs.queue_run(session.session_id, second, multitask="interrupt")).queued is Queued.STARTED
    state = await store.get_session(session.session_id)
    assert state.active_run_id == second.run_id
    assert [r.status for r in state.runs] == ["cancelled", "queued"]
    assert await redis.exists(store.keys.arq_job(second.run_id))
    assert await runs.start_run(session.session_id, first.run_id, first.run_id, token="late") is None  # its job


async def test_rollback_interrupts_and_leaves_the_cut_run_out_of_the_conversation(
    store: SessionStore, runs: AllWrites
) -> None:
    """LangGraph's `rollback`: the held run is cancelled through its worker, as an interrupt's, and marked
    at once, so the conversation (the next run's history, a thread's state) never shows it."""
    session_id, run = await start_a_run(runs)
    again = make_run("again")
    assert (await runs.queue_run(session_id, again, multitask="rollback")).queued is Queued.PENDING
    assert await lease_of(runs, session_id, run).renew() is Renewal.CANCEL_PENDING
    await lease_of(runs, session_id, run).append([], ending=RunCancelled(run_id=run.run_id, reason="rolled back"))
    state = await store.get_session(session_id)
    cut = state.run(run.run_id)
    assert cut is not None and cut.status == "cancelled" and cut.rolled_back  # the worker's end kept the mark
    assert [turn.run_id for turn in transcript(state.runs)] == [again.run_id]


async def test_a_cancel_with_rollback_marks_only_the_run_it_cancels(store: SessionStore, runs: AllWrites) -> None:
    session, first = make_session(), make_run("first")
    await runs.queue_run(session.session_id, first, create=session)
    assert await runs.cancel_run(session.session_id, first.run_id, rollback=True) == (Cancel.CANCELLED, first.run_id)
    assert (await store.get_session(session.session_id)).runs[0].rolled_back


# -- cancels and deletes -----------------------------------------------------------------------


async def test_cancel_ends_a_run_no_worker_holds_at_once(store: SessionStore, runs: AllWrites) -> None:
    session = make_session()
    with pytest.raises(SessionNotFound):
        await runs.cancel_run(session.session_id)
    run = make_run()
    await runs.queue_run(session.session_id, run, create=session)
    assert await runs.cancel_run(session.session_id) == (Cancel.CANCELLED, run.run_id)
    assert await runs.cancel_run(session.session_id) == (Cancel.IDLE, None)
    assert await event_types(store, session.session_id) == [b"run.queued", b"run.cancelled"]
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
        assert await next_published(pubsub, 1) == [run.run_id.encode()]  # once
    assert await lease_of(runs, session_id, run).renew() is Renewal.CANCEL_PENDING
    # Its worker died before ending it; the run's next worker ends it instead of running it.
    await expire_lease(store, redis, session_id)
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    taken = await runs.start_run(session_id, run.run_id, "any", token="lease-2")
    assert taken is not None and taken.verdict is StartVerdict.CANCEL
    await lease_of(runs, session_id, run, "lease-2").append([], ending=RunCancelled(run_id=run.run_id, reason="asked"))
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
    await lease_of(runs, session_id, first).append([], ending=completion(first.run_id))  # the second starts
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
    question = a_question()
    assert await runs.cancel_run(session_id, run.run_id, segment=1) == (Cancel.NOT_ACTIVE, run.run_id)  # not yet
    lease = lease_of(runs, session_id, run)
    assert await lease.ask([question], [question]) is Asked.WAITING
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
    question = a_question()
    assert await lease_of(runs, session_id, run).ask([question], [question]) is Asked.WAITING
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
        assert await next_published(pubsub, 1) == [SESSION_GONE]
    assert not await redis.exists(keys.meta, keys.runs, keys.events, keys.lease, keys.pending)
    assert await redis.zscore(store.keys.lease_checks, session_id) is None
    assert 0 < await redis.ttl(keys.gone) <= settings.tombstone_ttl_seconds
    assert await store.session_owner(session_id) == "acme"  # so another tenant is told 404, not 410
    assert await lease_of(runs, session_id, run).renew() is Renewal.LOST  # its worker stops
    with pytest.raises(LeaseLost):
        await lease_of(runs, session_id, run).append([delta_of(run.run_id)])
    assert (await runs.look(session_id)).outcome is Requeue.CLEARED
