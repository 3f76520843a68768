"""Steers (docs/steering.md) on the write side: kept with the session (steer.lua, queue_run.lua's
multitask `steer`), taken in by the run's worker once (apply_steers.lua), failed when the run ends
first, and taken in again by a run that starts over; run by fakeredis's Lua."""

import json

import pytest
from redis.asyncio import Redis

from tests.support.sessions import completion, delta_of, make_run, start_a_run
from tests.support.write_side import event_types, lease_of, next_published
from tests.support.writes import AllWrites
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.runs import Applied, Queued, Renewal, StartVerdict, Steered
from tokentail.shared.vocabulary.errors import LeaseLost, RunNotActive, SessionNotFound, SteerLimit, TooManySteers
from tokentail.shared.vocabulary.records import MAX_PENDING_STEERS, STEERS_STEP, RunRecord, transcript


async def _events(store: SessionStore, session_id: str, *types: bytes) -> list[dict[str, object]]:
    return [json.loads(event.data) for event in await store.read(session_id, 0, 1000) if event.type in types]


async def test_a_steer_is_kept_with_its_event_and_its_worker_is_told(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    session_id, run = await start_a_run(runs)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(store.keys.steer_channel)
        steered = await runs.steer(session_id, "st_1", "Answer in French")
        assert await next_published(pubsub, 1) == [run.run_id.encode()]
    assert (steered.run_id, steered.seq) == (run.run_id, 3)
    assert await _events(store, session_id, b"steer.accepted") == [
        {"run_id": run.run_id, "steer_id": "st_1", "input": "Answer in French"}
    ]
    # The same request sent again (its reply lost) keeps nothing twice, and answers as the first did.
    again = await runs.steer(session_id, "st_1", "Answer in French")
    assert (again.outcome, again.run_id, again.seq) == (Steered.AGAIN, run.run_id, 3)
    assert len(await _events(store, session_id, b"steer.accepted")) == 1


async def test_a_steer_needs_the_active_run_and_waits_in_a_bounded_line(runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    with pytest.raises(RunNotActive, match="r_other.*is not active"):
        await runs.steer(session_id, "st_0", "x", run_id="r_other")
    for n in range(MAX_PENDING_STEERS):
        await runs.steer(session_id, f"st_{n}", f"steer {n}", run_id=run.run_id)
    with pytest.raises(TooManySteers) as refused:
        await runs.steer(session_id, "st_more", "one too many")
    assert refused.value.retry_after > 0
    await lease_of(runs, session_id, run).append([], ending=completion(run.run_id))
    with pytest.raises(RunNotActive, match="has no active run"):
        await runs.steer(session_id, "st_late", "too late")
    with pytest.raises(SessionNotFound):
        await runs.steer("s_" + "x" * 22, "st_none", "x")


async def _next_run(runs: AllWrites, session_id: str) -> RunRecord:
    """The session's next run, queued and started (its last run ended)."""
    run = make_run()
    await runs.queue_run(session_id, run)
    started = await runs.start_run(session_id, run.run_id, run.run_id, token="lease-2")
    assert started is not None and started.verdict is StartVerdict.RUN
    return started.run


async def test_a_steer_sent_again_after_it_was_taken_in_or_its_run_ended_answers_as_the_first(
    store: SessionStore, runs: AllWrites
) -> None:
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    first = await runs.steer(session_id, "st_key", "in French")
    await lease.apply_steers(f"{STEERS_STEP}#0", 0)  # taken in: no steer waits any more
    again = await runs.steer(session_id, "st_key", "in French")
    assert (again.outcome, again.run_id, again.seq) == (Steered.AGAIN, run.run_id, first.seq)
    # A follow-up with multitask `steer` (its steer id is its run id's, from the idempotency key).
    follow_up = make_run("in English")
    steered = await runs.queue_run(session_id, follow_up, multitask="steer")
    assert steered.queued is Queued.STEERED
    await lease.append([], ending=completion(run.run_id))
    later = await _next_run(runs, session_id)
    # Another run is active now: each, sent again, still names the run it steered, and steers nothing.
    late = await runs.steer(session_id, "st_key", "in French")
    assert (late.outcome, late.run_id, late.seq) == (Steered.AGAIN, run.run_id, first.seq)
    resent = await runs.queue_run(session_id, follow_up.model_copy(), multitask="steer")
    assert (resent.queued, resent.run_id, resent.seq) == (Queued.STEERED, run.run_id, steered.seq)
    assert later.run_id != run.run_id and len(await _events(store, session_id, b"steer.accepted")) == 2


async def test_a_run_takes_in_a_bounded_count_and_size_of_steers(runs: AllWrites, redis: Redis) -> None:
    bounded = AllWrites(
        redis, runs.settings.model_copy(update={"max_steers_per_run": 3, "max_steer_chars_per_run": 10})
    )
    session_id, run = await start_a_run(bounded)
    lease = lease_of(bounded, session_id, run)
    await bounded.steer(session_id, "st_1", "abcd")
    await bounded.steer(session_id, "st_2", "efgh")
    with pytest.raises(SteerLimit, match="TOKENTAIL_MAX_STEERS_PER_RUN"):
        await bounded.steer(session_id, "st_3", "ijk")  # 11 characters in all
    await bounded.steer(session_id, "st_3", "ij")
    await lease.apply_steers(f"{STEERS_STEP}#0", 0)  # taken in or waiting, each counts
    with pytest.raises(SteerLimit):
        await bounded.steer(session_id, "st_4", "")
    with pytest.raises(SteerLimit):
        await bounded.queue_run(session_id, make_run(""), multitask="steer")
    # The bound is the run's: the session's next run takes steers in again.
    await lease.append([], ending=completion(run.run_id))
    await _next_run(bounded, session_id)
    assert (await bounded.steer(session_id, "st_5", "next")).outcome is Steered.OK


async def test_the_worker_takes_steers_in_once_recorded_as_a_step_of_its_run(
    store: SessionStore, runs: AllWrites
) -> None:
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    key = f"{STEERS_STEP}#0"
    assert (await lease.apply_steers(key, 0)).outcome is Applied.NONE
    await lease.append([delta_of(run.run_id, "Paris is")])
    await runs.steer(session_id, "st_1", "in French")
    await runs.steer(session_id, "st_2", "and shorter")
    applied = await lease.apply_steers(key, len("Paris is"))
    assert applied.outcome is Applied.APPLIED and applied.steers is not None
    assert [steer["input"] for steer in json.loads(applied.steers)] == ["in French", "and shorter"]
    assert lease.journal.written == applied.seq  # its own events: its next append expects them
    types = await event_types(store, session_id)
    assert types[-4:] == [b"steer.accepted", b"steer.accepted", b"steer.applied", b"steer.applied"]
    # Sent again (its reply lost): the same answer, nothing applied twice.
    again = await lease.apply_steers(key, 0)
    assert again.steers == applied.steers and await event_types(store, session_id) == types
    recorded = await store.get_run(session_id, run.run_id, steps=True)
    assert recorded is not None and json.loads(recorded.steps[key]) == json.loads(applied.steers)
    assert recorded.step_seq == applied.seq  # a continuation keeps the events up to them
    # The transcript keeps them where the answer took them in.
    await lease.append(
        [delta_of(run.run_id, "\n\nParis est.")], ending=completion(run.run_id, "Paris is\n\nParis est.")
    )
    turns = [(turn.role, turn.content) for turn in transcript((await store.get_session(session_id)).runs)]
    assert turns == [
        ("user", run.input), ("assistant", "Paris is"), ("user", "in French"), ("user", "and shorter"),
        ("assistant", "Paris est."),
    ]  # fmt: skip


async def test_a_taken_steer_s_text_is_kept_apart_from_its_run_s_record_which_grows_by_its_id_alone(
    store: SessionStore, runs: AllWrites, redis: Redis
) -> None:
    # Each take rewrote the run's record with the texts of every steer before it (722 steers of 100,000
    # characters made it 72 MB): now the record keeps ids and places, the session's steered hash the texts.
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    k = store.keys.session(session_id)
    sizes = [len(await redis.hget(k.runs, run.run_id) or b"")]  # type: ignore[misc]
    for n, letter in enumerate("abc"):
        await runs.steer(session_id, f"st_{n}", letter * 20_000)
        await lease.apply_steers(f"{STEERS_STEP}#{n}", n)
        sizes.append(len(await redis.hget(k.runs, run.run_id) or b""))  # type: ignore[misc]
    growth = [after - before for before, after in zip(sizes, sizes[1:], strict=False)]
    assert all(0 < grown < 200 for grown in growth), growth
    texts = ["a" * 20_000, "b" * 20_000, "c" * 20_000]
    assert [steer.input for steer in (await store.get_session(session_id)).runs[0].steers] == texts
    # A fork has no steered hash of its own: its records keep the texts.
    source = await store.fork_source(session_id, 1)
    assert (
        source is not None
        and [steer["input"] for steer in json.loads(json.loads(source.runs[run.run_id])["steers"])] == texts
    )
    # The texts live as long as the runs: kept while the run is active, expiring after its end with them.
    assert await redis.ttl(k.steered) == -1
    await lease.append([], ending=completion(run.run_id))
    assert await redis.ttl(k.steered) >= await redis.ttl(k.runs) > 0


@pytest.mark.parametrize("listening", [True, False])
async def test_steers_left_when_the_run_ends_fail_before_its_end(
    store: SessionStore, runs: AllWrites, listening: bool
) -> None:
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    lease.inbox.listening = listening
    await runs.steer(session_id, "st_1", "too late")
    await lease.append([], ending=completion(run.run_id))
    assert (await event_types(store, session_id))[-2:] == [b"steer.failed", b"run.completed"]
    reason = "run_ended" if listening else "not_supported"
    assert await _events(store, session_id, b"steer.failed") == [
        {"run_id": run.run_id, "steer_id": "st_1", "reason": reason}
    ]
    assert not await runs.redis.exists(store.keys.session(session_id).steers)


async def test_only_the_lease_s_holder_takes_steers_in(runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    await runs.steer(session_id, "st_1", "x")
    with pytest.raises(LeaseLost):
        await lease_of(runs, session_id, run, token="not-the-lease").apply_steers(f"{STEERS_STEP}#0", 0)


async def test_a_renewal_tells_the_worker_of_steers_it_was_not_told_of(runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    assert await lease.renew() is Renewal.RENEWED
    await runs.steer(session_id, "st_1", "x")
    assert await lease.renew() is Renewal.STEERED


async def test_a_run_that_starts_over_takes_its_steers_in_again(store: SessionStore, runs: AllWrites) -> None:
    session_id, run = await start_a_run(runs)
    lease = lease_of(runs, session_id, run)
    await runs.steer(session_id, "st_1", "first")
    await lease.apply_steers(f"{STEERS_STEP}#0", 0)
    await runs.steer(session_id, "st_2", "second")
    await runs.requeue(session_id, lease.token)  # its worker stops
    started = await runs.start_run(session_id, run.run_id, "job-2", token="lease-2", takeover="restart")
    assert started is not None and started.verdict is StartVerdict.RUN
    # The restart dropped what the first attempt took in: both wait again, in the order they came,
    # and its worker is told at its start.
    assert started.lease.inbox.sent.is_set()
    before = await store.get_run(session_id, run.run_id)
    assert before is not None and [steer.steer_id for steer in before.steers] == ["st_1"]
    applied = await started.lease.apply_steers(f"{STEERS_STEP}#0", 7)
    assert [steer["input"] for steer in json.loads(applied.steers or b"[]")] == ["first", "second"]
    # The run's record keeps each once, at its new place: its segments (Responses API) only grow.
    after = await store.get_run(session_id, run.run_id)
    assert after is not None
    assert [(steer.steer_id, steer.output_at) for steer in after.steers] == [("st_1", 7), ("st_2", 7)]


async def test_a_follow_up_with_multitask_steer_steers_the_active_run_and_queues_none(
    store: SessionStore, runs: AllWrites
) -> None:
    session_id, run = await start_a_run(runs)
    follow_up = make_run("and in French")
    queued = await runs.queue_run(session_id, follow_up, multitask="steer")
    assert (queued.queued, queued.run_id) == (Queued.STEERED, run.run_id)
    assert await _events(store, session_id, b"steer.accepted") == [
        {"run_id": run.run_id, "steer_id": "st_" + follow_up.run_id[2:], "input": "and in French"}
    ]
    assert await store.get_run(session_id, follow_up.run_id) is None  # no run recorded
    # Sent again (the same idempotent run id): the same steer, kept once.
    assert (await runs.queue_run(session_id, follow_up, multitask="steer")).queued is Queued.STEERED
    assert len(await _events(store, session_id, b"steer.accepted")) == 1
    # With no run active, it queues its run.
    await lease_of(runs, session_id, run).append([], ending=completion(run.run_id))
    assert (await runs.queue_run(session_id, make_run("next"), multitask="steer")).queued is Queued.STARTED
