"""The worker's spans (worker/run/traces.py) around real runs on a real Redis, exported in memory: who
writes a dead attempt's span (the takeover, or the verdict that ends the run), and who must not
(a hand-over ended its own; a stalled worker that lost its lease leaves its span unended)."""

import asyncio
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from tests.support.waiting import eventually, scaled
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.shared.plumbing import tracing
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.runs import Cancel
from tokentail.shared.vocabulary.records import Multitask, RunRecord, SessionRecord
from tokentail.worker.process.reaper import Reaper
from tokentail.worker.providers import Providers
from tokentail.worker.run.job import run_agent
from tokentail.worker.running import RunningRuns
from tokentail.worker.writes.appends import AppendTicks


async def _queue(runs: AllWrites, traced: bool = True, agent: str | None = None, **params: Any) -> tuple[str, str]:
    """Queue a run as a gateway would, with its traces on (the run carries its producer span) or off."""
    session = SessionRecord(session_id=new_session_id(), created_at=time.time(), model="scripted")
    run = RunRecord(run_id=new_run_id(), input="hello", model="scripted", params=params, agent=agent)
    on, tracing.ON = tracing.ON, traced
    try:
        await runs.queue_run(session.session_id, run, create=session)
    finally:
        tracing.ON = on
    return session.session_id, run.run_id


def _job(store: SessionStore, settings: Settings, job_id: str) -> dict[str, Any]:
    return {
        "store": store,
        "runs": AllWrites(store.redis, settings),
        "settings": settings,
        "providers": Providers(settings),
        "running": RunningRuns(),
        "job_id": job_id,
        "appends": AppendTicks(store.redis, settings),
    }


async def _dies_in_attempt_one(runs: AllWrites, redis: Redis, store: SessionStore, sid: str, rid: str) -> None:
    """A worker starts the run and is killed -9: its lease lapses (deleted here), the run still `running`."""
    started = await runs.start_run(sid, rid, "job-1")
    assert started is not None and started.run.attempt == 1
    await redis.delete(store.keys.session(sid).lease)


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _attempts(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    attempts = [s for s in spans if s.name.startswith("attempt ")]
    return sorted(
        attempts, key=lambda s: (int(_attrs(s)["tokentail.attempt"]), int(_attrs(s)["tokentail.attempt.resumes"]))
    )


def _one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


async def test_a_run_taken_over_from_a_dead_worker_gets_a_stand_in_and_a_linked_attempt(
    store: SessionStore, runs: AllWrites, redis: Redis, settings: Settings, exported: InMemorySpanExporter
) -> None:
    sid, rid = await _queue(runs, tokens=5, tokens_per_second=0)
    await _dies_in_attempt_one(runs, redis, store, sid, rid)
    await run_agent(_job(store, settings, "job-2"), sid, rid)
    spans = exported.get_finished_spans()
    run_span = _one(spans, "invoke_agent assistant")
    (producer,) = [s for s in spans if s.name.startswith("send ")]  # the gateway's
    lost, second = _attempts(spans)
    trace_id = producer.context.trace_id
    run_id = tracing.derived_span_id(trace_id, rid)
    assert run_span.context.trace_id == trace_id and run_span.context.span_id == run_id
    assert run_span.parent is not None and run_span.parent.span_id == producer.context.span_id
    # The queue's two ends, as service graphs pair them: the gateway's PRODUCER, the run's CONSUMER.
    assert (producer.kind, run_span.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    queue = {"messaging.system": "arq", "messaging.destination.name": store.keys.queue, "messaging.message.id": rid}
    assert _attrs(producer) | queue == _attrs(producer) and _attrs(producer)["messaging.operation.type"] == "send"
    assert _attrs(run_span) | queue == _attrs(run_span) and _attrs(run_span)["messaging.operation.type"] == "process"
    assert _attrs(run_span)["tokentail.run.status"] == "completed"
    assert _attrs(run_span)["tokentail.run.attempts"] == 2 and _attrs(run_span)["gen_ai.conversation.id"] == sid
    assert lost.context.span_id == tracing.derived_span_id(trace_id, rid, 1, 0)
    # Named for the start each was: the stand-in too, from the record (the run's start is a takeover now).
    assert (lost.name, second.name) == ("attempt 1 start", "attempt 2 takeover")
    assert _attrs(lost)["tokentail.attempt.started_as"] == "start"
    assert _attrs(lost)["tokentail.attempt.outcome"] == "lost"
    assert _attrs(lost)["tokentail.attempt.written_by"] == "takeover"
    assert second.context.span_id == tracing.derived_span_id(trace_id, rid, 2, 0)
    assert _attrs(second)["tokentail.attempt.started_as"] == "takeover"
    assert _attrs(second)["tokentail.attempt.outcome"] == "completed"
    assert [link.context.span_id for link in second.links] == [lost.context.span_id]
    assert {lost.parent.span_id, second.parent.span_id} == {run_id}  # type: ignore[union-attr]
    assert lost.start_time is not None and second.start_time is not None and lost.start_time <= second.start_time
    (chat,) = [s for s in spans if s.name == "chat scripted"]
    assert chat.parent is not None and chat.parent.span_id == second.context.span_id


async def test_a_stand_in_is_named_for_the_start_its_attempt_was(
    store: SessionStore, runs: AllWrites, redis: Redis, settings: Settings, exported: InMemorySpanExporter
) -> None:
    """Attempt 2 took the run over and died too: the stand-in the third writes for it says `takeover`,
    as the record kept (its `started_as` is the third's by then)."""
    sid, rid = await _queue(runs, tokens=5, tokens_per_second=0)
    await _dies_in_attempt_one(runs, redis, store, sid, rid)
    second = await runs.start_run(sid, rid, "job-2")
    assert second is not None and second.run.started_as == "takeover"
    await redis.delete(store.keys.session(sid).lease)  # killed -9 too
    await run_agent(_job(store, settings, "job-3"), sid, rid)
    lost, third = _attempts(exported.get_finished_spans())
    assert (lost.name, third.name) == ("attempt 2 takeover", "attempt 3 takeover")
    assert _attrs(lost)["tokentail.attempt.written_by"] == "takeover" and _attrs(lost)["tokentail.attempt"] == 2


async def test_a_run_handed_over_gets_no_stand_in_for_the_attempt_that_ended_its_own_span(
    store: SessionStore, runs: AllWrites, settings: Settings, exported: InMemorySpanExporter
) -> None:
    sid, rid = await _queue(runs, tokens=5, tokens_per_second=0)
    started = await runs.start_run(sid, rid, "job-1")
    assert started is not None
    await started.lease.hand_over()  # a stopping worker (SIGTERM); its own span it ends itself
    await run_agent(_job(store, settings, "job-2"), sid, rid)
    spans = exported.get_finished_spans()
    (second,) = _attempts(spans)  # none written for attempt 1
    assert _attrs(second)["tokentail.attempt"] == 2 and second.name == "attempt 2 takeover"
    linked = tracing.derived_span_id(second.context.trace_id, rid, 1, 0)
    assert [link.context.span_id for link in second.links] == [linked]


async def test_a_stalled_worker_that_lost_its_lease_does_not_end_its_attempt_span(
    store: SessionStore, runs: AllWrites, redis: Redis, settings: Settings, exported: InMemorySpanExporter
) -> None:
    sid, rid = await _queue(runs, tokens=10_000, tokens_per_second=200)
    task = asyncio.create_task(run_agent(_job(store, settings.model_copy(update={"lease_ms": 600}), "job-1"), sid, rid))

    async def running() -> None:
        assert (await store.get_run(sid, rid)).status == "running"  # type: ignore[union-attr]

    await eventually(running)
    await redis.set(store.keys.session(sid).lease, "another-worker")  # taken over elsewhere
    await asyncio.wait_for(task, scaled(5))
    spans = exported.get_finished_spans()
    assert _attempts(spans) == [] and "invoke_agent assistant" not in [s.name for s in spans]  # the next worker's


@pytest.mark.parametrize("verdict", ["exhausted", "cancel"])
async def test_a_run_ended_at_its_start_writes_its_dead_attempt_and_its_own_span(
    store: SessionStore, runs: AllWrites, redis: Redis, settings: Settings, exported: InMemorySpanExporter, verdict: str
) -> None:
    sid, rid = await _queue(runs, traced=False, tokens=5, tokens_per_second=0)
    await _dies_in_attempt_one(runs, redis, store, sid, rid)
    if verdict == "cancel":
        await redis.hset(store.keys.session(sid).meta, "cancel_run", rid)  # type: ignore[misc]
    settings = settings.model_copy(update={"max_attempts": 1})
    await run_agent(_job(store, settings, "job-2"), sid, rid)
    spans = exported.get_finished_spans()
    (lost,) = _attempts(spans)
    run_span = _one(spans, "invoke_agent assistant")
    # Queued with traces off: a trace of the run's own, whose root is the run's span.
    trace_id = tracing.derived_trace_id("tokentail-run", rid)
    assert run_span.context.trace_id == trace_id and run_span.parent is None
    assert run_span.context.span_id == tracing.derived_span_id(trace_id, rid)
    assert lost.context.span_id == tracing.derived_span_id(trace_id, rid, 1, 0)
    assert lost.parent is not None and lost.parent.span_id == run_span.context.span_id
    assert lost.name == "attempt 1 start" and _attrs(lost)["tokentail.attempt.written_by"] == verdict
    assert run_span.kind == SpanKind.CONSUMER and _attrs(run_span)["messaging.operation.type"] == "process"
    if verdict == "cancel":
        assert _attrs(run_span)["tokentail.run.status"] == "cancelled"
    else:
        assert _attrs(run_span)["error.type"] == "attempts_exhausted"


async def test_a_question_that_expires_unanswered_has_its_run_span_written_by_the_reaper_that_ends_it(
    store: SessionStore, runs: AllWrites, settings: Settings, exported: InMemorySpanExporter
) -> None:
    settings = settings.model_copy(update={"agents": {"expiring": "tests.agents.asking_agent:expiring"}})
    sid, rid = await _queue(runs, agent="expiring")
    await run_agent(_job(store, settings, "job-1"), sid, rid)  # it asks, and its attempt ends waiting
    (asked,) = _attempts(exported.get_finished_spans())
    assert asked.name == "attempt 1 start" and _attrs(asked)["tokentail.attempt.outcome"] == "waiting"
    clock = [0.0]  # the reaper's: Redis healthy for a whole lease already
    reaper = Reaper(AllWrites(store.redis, settings), interval=100, lease_seconds=1, clock=lambda: clock[0])
    await reaper.sweep()
    clock[0] = 2.0

    async def expired() -> None:
        await reaper.sweep()
        assert (await store.get_run(sid, rid)).status == "failed"  # type: ignore[union-attr]

    await eventually(expired)
    run_span = _one(exported.get_finished_spans(), "invoke_agent expiring")
    assert _attrs(run_span)["error.type"] == "input_expired" and _attrs(run_span)["tokentail.run.status"] == "failed"
    assert run_span.kind == SpanKind.CONSUMER and _attrs(run_span)["messaging.destination.name"] == store.keys.queue
    assert asked.parent is not None and asked.parent.span_id == run_span.context.span_id


async def test_a_gateway_that_cancels_a_run_no_worker_holds_writes_its_dead_attempt_and_its_span(
    store: SessionStore, runs: AllWrites, redis: Redis, exported: InMemorySpanExporter
) -> None:
    sid, rid = await _queue(runs, tokens=5, tokens_per_second=0)
    await _dies_in_attempt_one(runs, redis, store, sid, rid)
    outcome, _ = await runs.cancel_run(sid)  # as DELETE .../runs/active does: no worker to tell, it ends now
    assert outcome is Cancel.CANCELLED
    spans = exported.get_finished_spans()
    run_span = _one(spans, "invoke_agent assistant")
    (lost,) = _attempts(spans)
    assert _attrs(run_span)["tokentail.run.status"] == "cancelled"
    assert run_span.context.span_id == tracing.derived_span_id(run_span.context.trace_id, rid)
    assert run_span.kind == SpanKind.CONSUMER and _attrs(run_span)["messaging.message.id"] == rid  # the gateway's
    assert lost.name == "attempt 1 start"
    assert (
        _attrs(lost)["tokentail.attempt.outcome"] == "lost" and _attrs(lost)["tokentail.attempt.written_by"] == "cancel"
    )
    assert lost.parent is not None and lost.parent.span_id == run_span.context.span_id


async def test_a_queued_run_cancelled_before_any_start_has_its_run_span_and_no_attempt(
    store: SessionStore, runs: AllWrites, exported: InMemorySpanExporter
) -> None:
    sid, rid = await _queue(runs)
    assert (await runs.cancel_run(sid, rid))[0] is Cancel.CANCELLED
    spans = exported.get_finished_spans()
    assert _attrs(_one(spans, "invoke_agent assistant"))["tokentail.run.status"] == "cancelled"
    assert _attempts(spans) == []


async def _queue_on(runs: AllWrites, sid: str, multitask: Multitask) -> str:
    run = RunRecord(run_id=new_run_id(), input="and then", model="scripted")
    await runs.queue_run(sid, run, multitask=multitask)
    return run.run_id


async def test_an_interrupt_writes_the_spans_of_the_runs_it_ended_with_no_worker(
    store: SessionStore, runs: AllWrites, redis: Redis, exported: InMemorySpanExporter
) -> None:
    sid, dead = await _queue(runs, tokens=5, tokens_per_second=0)
    await _dies_in_attempt_one(runs, redis, store, sid, dead)
    in_line = await _queue_on(runs, sid, "enqueue")
    exported.clear()
    await _queue_on(runs, sid, "interrupt")  # supersedes the run in line, and cancels the unheld one now
    spans = exported.get_finished_spans()
    ended = {_attrs(s)["tokentail.run.id"]: _attrs(s) for s in spans if s.name == "invoke_agent assistant"}
    assert set(ended) == {dead, in_line} and {a["tokentail.run.status"] for a in ended.values()} == {"cancelled"}
    (lost,) = _attempts(spans)  # the one in line never started
    assert _attrs(lost)["tokentail.run.id"] == dead and _attrs(lost)["tokentail.attempt.written_by"] == "interrupt"
    assert _attrs(lost)["tokentail.attempt.outcome"] == "lost"


async def test_a_session_deleted_under_a_running_worker_has_its_runs_and_the_fenced_attempt_written_once(
    store: SessionStore, runs: AllWrites, settings: Settings, exported: InMemorySpanExporter
) -> None:
    sid, rid = await _queue(runs, tokens=10_000, tokens_per_second=200)
    task = asyncio.create_task(run_agent(_job(store, settings, "job-1"), sid, rid))

    async def running() -> None:
        assert (await store.get_run(sid, rid)).status == "running"  # type: ignore[union-attr]

    await eventually(running)
    in_line = await _queue_on(runs, sid, "enqueue")
    await runs.delete_session(await store.get_session(sid))
    await asyncio.wait_for(task, scaled(5))  # fenced at its next write: it ends nothing of its own
    spans = exported.get_finished_spans()
    ended = {_attrs(s)["tokentail.run.id"]: _attrs(s) for s in spans if s.name == "invoke_agent assistant"}
    assert set(ended) == {rid, in_line} and {a["tokentail.run.status"] for a in ended.values()} == {"cancelled"}
    (fenced,) = _attempts(spans)
    assert _attrs(fenced)["tokentail.run.id"] == rid and _attrs(fenced)["tokentail.attempt.written_by"] == "delete"
    assert _attrs(fenced)["tokentail.attempt.outcome"] == "session_deleted" and fenced.name == "attempt 1 start"
    assert fenced.context.span_id == tracing.derived_span_id(fenced.context.trace_id, rid, 1, 0)
