"""A worker's writes under a run's lease (worker/writes/run_writes.py) and their Lua scripts, run by
fakeredis's Lua: starting, fenced and idempotent appends, renewals, takeovers and hand-overs,
questions and what answering them resumes."""

import json
import time
from typing import Any

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from tests.support.sessions import completion, delta_of, make_run, make_session, start_a_run
from tests.support.write_side import a_question, event_types, expire_lease, lease_of, next_published
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_session_id
from tokentail.shared.features.webhook_messages import Hook
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.contract import Script
from tokentail.shared.store.scripts.runs import (
    AppendEvents,
    Ask,
    Asked,
    Cancel,
    Look,
    Queued,
    Renewal,
    Requeue,
    StartRun,
    StartVerdict,
)
from tokentail.shared.vocabulary.errors import (
    InputNotPending,
    LeaseLost,
)
from tokentail.shared.vocabulary.events import ErrorInfo, RunFailed

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
    assert await event_types(store, session_id) == [b"run.queued", b"run.started"]


async def test_only_the_active_run_of_an_existing_session_starts(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    await lease_of(runs, session_id, run).append([], ending=completion(run.run_id))
    assert await runs.start_run(session_id, run.run_id, "late-job", token="lease-2") is None  # ended
    assert await runs.start_run(session_id, "r_other", "job", token="lease-2") is None  # not its run
    assert await runs.start_run(new_session_id(), "r_x", "job", token="lease-2") is None  # no session


async def test_after_max_attempts_the_run_is_to_be_failed(redis: Redis, settings: Settings) -> None:
    settings = settings.model_copy(update={"max_attempts": 1})
    store, runs = SessionStore(redis, settings), AllWrites(redis, settings)
    session_id, run = await start_a_run(runs)
    await expire_lease(store, redis, session_id)
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    taken = await runs.start_run(session_id, run.run_id, "any", token="lease-2")
    assert taken is not None and taken.verdict is StartVerdict.EXHAUSTED
    assert await event_types(store, session_id) == [b"run.queued", b"run.started"]  # its worker writes run.failed


# -- appending ----------------------------------------------------------------------------------


async def test_appends_take_contiguous_ids_and_are_fenced_by_the_lease(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    assert await lease_of(runs, session_id, run).append([delta_of(run.run_id)] * 3) == 5
    with pytest.raises(LeaseLost, match="FENCED"):
        await lease_of(runs, session_id, run, "someone-else").append([delta_of(run.run_id)])
    assert (await runs.requeue(session_id, "lease-1")).outcome is Requeue.REQUEUED  # handed over: the lease is gone
    with pytest.raises(LeaseLost):
        await lease_of(runs, session_id, run).append([delta_of(run.run_id)])
    assert [e.seq for e in await store.read(session_id, 0, 100)] == [1, 2, 3, 4, 5]


async def test_a_run_that_ended_takes_no_more_appends(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    await lease_of(runs, session_id, run).append([], ending=completion(run.run_id))
    with pytest.raises(LeaseLost):
        await lease_of(runs, session_id, run).append([delta_of(run.run_id)])
    with pytest.raises(LeaseLost):  # nor a second ending
        await lease_of(runs, session_id, run).append([], ending=completion(run.run_id))
    assert await event_types(store, session_id) == [b"run.queued", b"run.started", b"run.completed"]


async def test_an_append_sent_twice_with_one_id_lands_once(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    assert await lease.append([delta_of(run.run_id)], append_id="a1") == 3
    # Sent again as it was, its reply lost: the same id, after the same last seq it knew of (2).
    assert await runs.append(lease, [delta_of(run.run_id)], "a1", None, 2) == 3
    assert await lease.append([delta_of(run.run_id)], append_id="a2") == 4
    done = completion(run.run_id, "x")
    last = await lease.append([], append_id="a3", ending=done)
    # The terminal append dropped the lease; its retry must still answer, not be fenced.
    assert await lease.append([], append_id="a3", ending=done) == last == 5
    assert [e.seq for e in await store.read(session_id, 0, 100)] == [1, 2, 3, 4, 5]


async def test_an_append_goes_on_after_another_writer_s_events_and_its_retry_finds_itself_past_them(
    store: SessionStore, runs: AllWrites
) -> None:
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    assert await lease.append([delta_of(run.run_id, "a")]) == 3
    assert (
        await runs.queue_run(session_id, make_run("next"), multitask="enqueue")
    ).queued is Queued.PENDING  # run.queued: 4
    events = [delta_of(run.run_id, "b")]
    assert await lease.append(events, append_id="b1") == 5  # its worker knew of 3 only
    assert await runs.append(lease, events, "b1", None, 3) == 5, "sent again, it finds itself past run.queued"
    assert await event_types(store, session_id) == [
        b"run.queued",
        b"run.started",
        b"message.delta",
        b"run.queued",
        b"message.delta",
    ]


async def test_a_terminal_event_closes_the_run_frees_the_session_and_starts_retention(
    store: SessionStore, runs: AllWrites, redis: Redis, settings: Settings
) -> None:
    session_id, run = await start_a_run(runs)
    await lease_of(runs, session_id, run).append([delta_of(run.run_id, "hi")], ending=completion(run.run_id, "hi"))
    state = await store.get_session(session_id)
    assert state.active_run_id is None and state.status == "idle" and state.last_event_id == 4
    assert state.runs[0].status == "completed" and state.runs[0].output == "hi" and state.runs[0].finished_seq == 4
    keys = store.keys.session(session_id)
    assert not await redis.exists(keys.lease) and await redis.zscore(store.keys.lease_checks, session_id) is None
    for key in (keys.meta, keys.runs, keys.events):
        assert 0 < await redis.ttl(key) <= settings.session_ttl_seconds
    assert await redis.ttl(keys.gone) > settings.session_ttl_seconds  # an expired id answers 410
    # A follow-up run appends to the same stream and clears the TTL.
    assert (await runs.queue_run(session_id, make_run("more"))).queued is Queued.STARTED
    assert (await store.stream_position(session_id))[0] == 5
    assert await redis.ttl(keys.events) == -1


async def test_failure_is_recorded_with_its_error(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    failed = RunFailed(run_id=run.run_id, error=ErrorInfo(type="internal_error", message="boom"))
    await lease_of(runs, session_id, run).append([], ending=failed)
    record = (await store.get_session(session_id)).runs[0]
    assert record.status == "failed" and record.error is not None and record.error.message == "boom"


async def test_every_event_is_published_on_the_session_s_channel(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    channel = store.keys.session(session_id).events
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(channel)
        await lease_of(runs, session_id, run).append([delta_of(run.run_id, "a"), delta_of(run.run_id, "b")])
        published = [message.split(b" ", 3) for message in await next_published(pubsub, 2)]
    assert [(seq, kind) for seq, _, kind, _ in published] == [(b"3", b"message.delta"), (b"4", b"message.delta")]
    assert [json.loads(data)["text"] for *_, data in published] == ["a", "b"]


# -- leases: renewals, takeovers, hand-overs ---------------------------------------------------


async def test_a_renewal_answers_its_holder_only(store: SessionStore, runs: AllWrites, redis: Redis) -> None:
    session_id, run = await start_a_run(runs)
    meta = store.keys.session(session_id).meta
    await redis.hset(meta, "lease_until", "1")  # type: ignore[misc]
    assert await lease_of(runs, session_id, run).renew() is Renewal.RENEWED
    deadline = int(await redis.hget(meta, "lease_until"))  # type: ignore[misc]
    seconds, _ = await redis.time()
    assert deadline > seconds * 1000  # pushed a lease past now
    assert await redis.zscore(store.keys.lease_checks, session_id) == deadline  # the index follows
    assert await lease_of(runs, session_id, run, "not-mine").renew() is Renewal.LOST
    await lease_of(runs, session_id, run).append([], ending=completion(run.run_id))
    assert await lease_of(runs, session_id, run).renew() is Renewal.LOST  # ended


async def test_a_run_whose_lease_expired_is_requeued_once_and_taken_over_as_the_next_attempt(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    assert await runs.leases.due(0, 100) == []  # the index holds it at its lease's deadline
    await expire_lease(store, redis, session_id)
    assert [entry.member for entry in await runs.leases.due(0, 100)] == [session_id]
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    again = await runs.look(session_id)  # another reaper finds nothing to do: the takeover's job is queued
    assert again.outcome is Requeue.PUSHED and not again.pushed
    with pytest.raises(LeaseLost):  # the dead worker, were it only stalled, is fenced out
        await lease_of(runs, session_id, run).append([delta_of(run.run_id)])
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
    await expire_lease(store, redis, session_id)
    assert await lease_of(runs, session_id, run).renew() is Renewal.RENEWED
    look = await runs.look(session_id)  # a reaper that read the entry before the renewal
    seconds, _ = await redis.time()
    assert look.outcome is Requeue.RENEWED and look.look_again_at is not None and look.look_again_at > seconds * 1000
    await lease_of(runs, session_id, run).append([delta_of(run.run_id)])  # not fenced


async def test_a_reaper_clears_index_entries_with_nothing_to_take_over(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    ended, run = await start_a_run(runs)
    await lease_of(runs, ended, run).append([], ending=completion(run.run_id))
    for session_id in (ended, new_session_id()):  # ended, never existed
        await expire_lease(store, redis, session_id)
        assert (await runs.look(session_id)).outcome is Requeue.CLEARED  # the reaper drops the entry


async def test_a_queued_run_whose_job_arq_ended_unstarted_is_queued_again_by_a_reaper(
    store: SessionStore, runs: AllWrites, redis: Redis, settings: Settings
) -> None:
    queued = make_session()
    run = make_run()
    await runs.queue_run(queued.session_id, run, create=queued)
    # Looked at two leases after it was queued, and again for as long as it waits.
    assert settings.lease_ms * 2 - 100 <= (await redis.zscore(store.keys.lease_checks, queued.session_id)) - _now_ms()
    look = await runs.look(queued.session_id)
    assert look.outcome is Requeue.PUSHED and not look.pushed  # its job is queued: nothing to do
    assert look.look_again_at is not None and look.look_again_at >= _now_ms() + settings.lease_ms * 2 - 100
    # A worker's arq failed its job without starting the run (a Redis error on its way to start_run.lua,
    # an expired payload): arq finished the job, as finish_jobs.lua does.
    await redis.zrem(store.keys.queue, run.run_id)
    await redis.delete(f"arq:job:{run.run_id}")
    look = await runs.look(queued.session_id)
    assert look.outcome is Requeue.PUSHED and look.pushed
    assert await redis.zscore(store.keys.queue, run.run_id) is not None and await redis.exists(f"arq:job:{run.run_id}")
    assert await runs.start_run(queued.session_id, run.run_id, run.run_id, token="lease-1") is not None
    assert (await runs.look(queued.session_id)).outcome is Requeue.RENEWED  # started: nothing owed any more


async def test_a_hand_over_needs_the_current_lease_and_costs_no_attempt(redis: Redis, settings: Settings) -> None:
    runs = AllWrites(redis, settings.model_copy(update={"max_attempts": 1}))
    session_id, run = await start_a_run(runs)
    assert (await runs.requeue(session_id, "not-mine")).outcome is Requeue.NOT_HOLDER
    for attempt in range(2, 5):  # three deploys in a row
        assert await lease_of(runs, session_id, run, f"lease-{attempt - 1}").hand_over() is Requeue.REQUEUED
        taken = await runs.start_run(session_id, run.run_id, "any", token=f"lease-{attempt}")
        assert taken is not None and taken.verdict is StartVerdict.RUN and taken.run.attempt == attempt


# -- replies lost: a write sent again changes nothing twice ----------------------------------------


def lose_next_reply(runs: AllWrites, kind: type[Script[Any]]) -> list[Script[Any]]:
    """The next call of a `kind` script runs, and its reply is lost (a connection cut as Redis answered);
    the calls whose replies were lost."""
    run = runs.run
    lost: list[Script[Any]] = []

    async def losing(script: Script[Any]) -> Any:
        reply = await run(script)
        if isinstance(script, kind) and not lost:
            lost.append(script)
            raise redis_errors.ConnectionError("Connection closed by server.")
        return reply

    runs.run = losing
    return lost


async def test_a_start_whose_reply_was_lost_is_claimed_once(store: SessionStore, runs: AllWrites) -> None:
    session = make_session()
    run = make_run()
    await runs.queue_run(session.session_id, run, create=session)
    lost = lose_next_reply(runs, StartRun)
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1")
    assert lost and started is not None and started.verdict is StartVerdict.RUN and started.run.attempt == 1
    assert await event_types(store, session.session_id) == [b"run.queued", b"run.started"]


async def test_a_takeover_whose_reply_was_lost_keeps_its_verdict(redis: Redis, settings: Settings) -> None:
    settings = settings.model_copy(update={"max_attempts": 1})
    store, runs = SessionStore(redis, settings), AllWrites(redis, settings)
    session_id, run = await start_a_run(runs)
    await expire_lease(store, redis, session_id)
    assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
    lost = lose_next_reply(runs, StartRun)
    taken = await runs.start_run(session_id, run.run_id, "any", token="lease-2")
    assert lost and taken is not None and taken.verdict is StartVerdict.EXHAUSTED


async def test_an_append_and_a_question_whose_replies_were_lost_land_once(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    lost = lose_next_reply(runs, AppendEvents)
    assert await lease.append([delta_of(run.run_id)]) == 3 and lost
    lost = lose_next_reply(runs, Ask)
    question = a_question()
    assert await lease.ask([question], [question]) is Asked.WAITING and lost
    assert await event_types(store, session_id) == [b"run.queued", b"run.started", b"message.delta", b"input.required"]


# -- questions ----------------------------------------------------------------------------------


async def test_a_question_gives_the_run_up_and_one_answer_queues_it_again(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    question = a_question()
    lease = lease_of(runs, session_id, run)
    assert await lease.ask([question], [question]) is Asked.WAITING
    waiting = (await store.get_session(session_id)).runs[0]
    assert waiting.status == "waiting" and waiting.waiting_for == ["in_1"] and waiting.question == question
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


async def test_questions_asked_at_once_are_answered_in_any_order_and_the_last_answer_queues_the_run(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    for order in ((0, 1), (1, 0)):
        session_id, run = await start_a_run(runs)
        keys = store.keys.session(session_id)
        await redis.hset(keys.meta, "webhook", "https://hooks.example/")  # type: ignore[misc]
        asked = [a_question("in_1"), a_question("in_2")]
        assert await lease_of(runs, session_id, run).ask(asked, asked) is Asked.WAITING
        # Each question goes to the webhook (an OpenAI-format one skips those with `more`: Hook.asks_more).
        hooks = [Hook.parse(session_id, entry) for entry in await redis.lrange(keys.hooks, 0, -1)]  # type: ignore[misc]
        assert [(hook.type, hook.asks_more) for hook in hooks] == [("input.required", True), ("input.required", False)]
        waiting = (await store.get_session(session_id)).runs[0]
        assert waiting.waiting_for == ["in_1", "in_2"] and waiting.questions == asked
        first, second = (asked[i].input_id for i in order)
        jobs = await redis.zcard(store.keys.queue)
        # An answer is spliced into the run's answers as sent: cjson would round this float and make [] {}.
        await runs.answer(session_id, waiting, first, {"n": 0.30000000000000004, "list": []})
        partly = (await store.get_session(session_id)).runs[0]
        assert partly.status == "waiting" and partly.waiting_for == [second] and partly.questions == [asked[order[1]]]
        assert partly.segment == 0 and await redis.zcard(store.keys.queue) == jobs  # nothing queued yet
        with pytest.raises(InputNotPending):  # each question is answered once
            await runs.answer(session_id, partly, first, "again")
        await runs.answer(session_id, partly, second, "Ada")
        done = (await store.get_session(session_id)).runs[0]
        assert done.status == "queued" and done.waiting_for == [] and done.resumes == 1 and done.segment == 1
        assert done.answers == {first: {"n": 0.30000000000000004, "list": []}, second: "Ada"}
        assert await redis.zcard(store.keys.queue) == jobs + 1
        events = await store.read(session_id, 0, 100)
        asking = [json.loads(e.data) for e in events if e.type == b"input.required"]
        assert [(q["input_id"], q.get("more", 0)) for q in asking] == [("in_1", 1), ("in_2", 0)]
        received = [json.loads(e.data) for e in events if e.type == b"input.received"]
        assert [(r["input_id"], r.get("waiting_for")) for r in received] == [(first, [second]), (second, None)]


async def test_of_questions_asked_at_once_each_expires_as_its_agent_chose(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    soon, later = a_question("in_1", expires_at=1.0), a_question("in_2", expires_at=4_000_000_000.0)
    soon.on_expiry, soon.default = "default", "nobody"
    await lease_of(runs, session_id, run).ask([soon, later], [soon, later])
    # The first deadline passed: its question takes its default; the run waits on for the other, till its own.
    assert await runs.look(session_id) == Look(Requeue.RENEWED, 4_000_000_000_000)
    waiting = (await store.get_session(session_id)).runs[0]
    assert waiting.status == "waiting" and waiting.waiting_for == ["in_2"] and waiting.answers == {"in_1": "nobody"}
    await runs.answer(session_id, waiting, "in_2", "Ada")
    assert (await store.get_session(session_id)).runs[0].status == "queued"
    await redis.delete(store.keys.lease_checks)

    session_id, run = await start_a_run(runs)
    failing, later = a_question("in_1", expires_at=1.0), a_question("in_2", expires_at=4_000_000_000.0)
    await lease_of(runs, session_id, run).ask([failing, later], [failing, later])
    assert (await runs.look(session_id)).outcome is Requeue.CLEARED  # one that fails the run fails it
    record = (await store.get_session(session_id)).runs[0]
    assert record.status == "failed" and record.error is not None and record.error.type == "input_expired"
    await redis.delete(store.keys.lease_checks)


DEFAULT = {"n": 0.30000000000000004, "none": []}  # as its text was: no cjson round trip (rounded, [] as {})


async def test_a_run_that_waited_before_several_questions_could_be_open_is_answered_as_it_was(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    """A record an older tokentail wrote (one `waiting_for` id, the expired answer precomputed) still
    takes its answer, or its default when it expires."""
    for expired in (False, True):
        session_id, run = await start_a_run(runs)
        question = a_question(expires_at=1.0)
        await lease_of(runs, session_id, run).ask([question], [question])
        runs_key = store.keys.session(session_id).runs
        record = json.loads(await redis.hget(runs_key, run.run_id))  # type: ignore[misc]
        del record["expiry"]
        received = {"run_id": run.run_id, "input_id": "in_1", "answer": DEFAULT}
        record |= {"waiting_for": "in_1", "on_expiry_received": json.dumps(received, separators=(",", ":"))}
        await redis.hset(runs_key, run.run_id, json.dumps(record))  # type: ignore[misc]
        if expired:
            assert (await runs.look(session_id)).outcome is Requeue.REQUEUED
        else:
            await runs.answer(session_id, (await store.get_session(session_id)).runs[0], "in_1", "Ada")
        answered = (await store.get_session(session_id)).runs[0]
        assert answered.status == "queued" and answered.answers == {"in_1": DEFAULT if expired else "Ada"}
        await redis.delete(store.keys.lease_checks)


async def test_an_answered_question_resumes_the_same_attempt_and_only_a_takeover_counts_one(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    # run.started's attempt rose with every answer (1, 2, 3 with no crash): a UI took each for a retry.
    session_id, run = await start_a_run(runs)
    for number in (1, 2):
        asked = [a_question(f"in_{n}") for n in range(1, number + 1)]
        lease = lease_of(runs, session_id, run, f"lease-{number}")
        assert await lease.ask(asked, asked[-1:]) is Asked.WAITING
        await runs.answer(session_id, (await store.get_session(session_id)).runs[0], f"in_{number}", "x")
        [job_id] = [job.decode() for job in await redis.zrange(store.keys.queue, 0, -1)]
        resumed = await runs.start_run(session_id, run.run_id, job_id, token=f"lease-{number + 1}")
        assert resumed is not None and resumed.run.attempt == 1 and resumed.run.started_as == "resume"
    await expire_lease(store, redis, session_id)  # its worker dies, and a reaper requeues it
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
        asked = [a_question(f"in_{n}") for n in range(1, number + 1)]
        assert await lease_of(runs, session_id, run, token).ask(asked, asked[-1:]) is Asked.WAITING
        waiting = (await store.get_session(session_id)).runs[0]
        await runs.answer(session_id, waiting, f"in_{number}", "x")
        [job_id] = [job.decode() for job in await redis.zrange(store.keys.queue, 0, -1)]
        taken = await runs.start_run(session_id, run.run_id, job_id, token=f"lease-{number + 1}")
        assert taken is not None and taken.verdict is StartVerdict.RUN


async def test_a_cancel_pending_as_the_run_asks_wins(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    assert await runs.cancel_run(session_id) == (Cancel.SIGNALLED, run.run_id)
    question = a_question()
    assert await lease_of(runs, session_id, run).ask([question], [question]) is Asked.CANCEL
    assert (await store.get_session(session_id)).runs[0].status == "running"  # its worker writes run.cancelled


async def test_an_expired_question_fails_the_run_or_takes_its_default(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    for default in (False, True):
        session_id, run = await start_a_run(runs)
        question = a_question(expires_at=1.0)  # long past
        if default:
            question.on_expiry, question.default = "default", "nobody"
        await lease_of(runs, session_id, run).ask([question], [question])
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
    question = a_question(expires_at=4_000_000_000.0)
    await lease_of(runs, session_id, run).ask([question], [question])
    assert await runs.look(session_id) == Look(Requeue.RENEWED, 4_000_000_000_000)


def _now_ms() -> float:
    return time.time() * 1000
