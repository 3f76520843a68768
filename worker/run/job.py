"""The arq job that runs one run of a session: `run.started`, deltas, then a terminal event."""

import asyncio
import logging
import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from arq.worker import Retry

from tokentail.shared.connections.outage import ride_out
from tokentail.shared.features.admission import FollowerSlot
from tokentail.shared.plumbing import run_spans, tracing
from tokentail.shared.plumbing.logs import bind
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys, session_of
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.children import Awaited
from tokentail.shared.store.scripts.runs import Asked, Requeue, StartVerdict
from tokentail.shared.vocabulary.catalog import parse_model
from tokentail.shared.vocabulary.errors import LeaseLost
from tokentail.shared.vocabulary.events import (
    CANCELLED_BY_REQUEST,
    Ending,
    ErrorInfo,
    RunCancelled,
    RunCompleted,
    RunFailed,
    Status,
)
from tokentail.shared.vocabulary.records import PUBLIC_TENANT, Question, RunRecord, transcript
from tokentail.shared.vocabulary.run_log import RunLog
from tokentail.worker import metrics
from tokentail.worker.agent_errors import (
    AgentError,
    BlockingCall,
    ChildFailed,
    EventTooLarge,
    OutputTooLarge,
    SpawnRefused,
    StepTooLarge,
    WaitingForChildren,
    WaitingForInput,
)
from tokentail.worker.providers import Providers
from tokentail.worker.providers.base import InvalidRequest, ProviderError
from tokentail.worker.run import traces
from tokentail.worker.run.agent_loop import run_model_agent
from tokentail.worker.run.agents import Agent, load_agent
from tokentail.worker.run.children import Children
from tokentail.worker.run.context import RunContext, waiting_in
from tokentail.worker.run.recovery.takeover import plan_takeover
from tokentail.worker.run.retry import RetryPolicy
from tokentail.worker.run.usage import UsageMeter
from tokentail.worker.running import HOW_TO_FIX, RunningRuns, Stop
from tokentail.worker.writes.lease import LeaseKeeper
from tokentail.worker.writes.lost_writes import HandedOver
from tokentail.worker.writes.run_writes import RunLease, RunWrites, Started, Takeover
from tokentail.worker.writes.writer import EventWriter

logger = logging.getLogger(__name__)

MAX_START_DEFER_SECONDS = 60  # the longest a job whose run could not start waits before it runs again
# What a run whose agent returned without showing any answer (no text, tool call or data event)
# says before its `run.completed`, so that its empty `output` is never silent. It still completes:
# what the agent did (its side effects, its status events) happened, and a retry would do it again.
NO_ANSWER = "The agent finished without an answer: it streamed no text, tool call or data."


async def run_agent(ctx: dict[str, Any], session_id: str, run_id: str, **owner: str) -> None:
    # `owner`: the run's tenant and user, which its job names for the claim's caps (lib/admission.lua).
    settings: Settings = ctx["settings"]
    running: RunningRuns = ctx["running"]
    session = session_of(session_id)  # what logs name (`session_id` is a child's lane)
    bind(session_id=session, run_id=run_id)  # each arq job runs in a task of its own
    told = running.told_of_steers()  # (asked before the start: of every steer sent after it)
    running.expect(run_id)
    try:
        started, kept = await _claim(ctx, session_id, run_id)
    except BaseException:
        running.forget(run_id)
        raise
    if started is None:
        # A duplicate delivery, a deleted session, or a run another worker holds: nothing to do.
        running.forget(run_id)
        logger.info("run %s of session %s is not ours to start", run_id, session)
        return
    lease, run, verdict, earlier, known_children = started
    lease.inbox.told = told
    writer = EventWriter(lease, ctx["appends"], settings.max_output_chars)
    writer.parent_run_id = run.parent_run_id
    meter = UsageMeter(run, writer)
    if verdict is not StartVerdict.RUN:
        running.forget(run_id)
        await _end_at_start(writer, meter, lease, run, verdict, ctx["job_id"])
        return
    await _attempt(ctx, session_id, started, writer, meter, kept, owner.get("tenant"))


async def _attempt(
    ctx: dict[str, Any],
    session_id: str,
    started: Started,
    writer: EventWriter,
    meter: UsageMeter,
    kept: RunLog | None,
    tenant: str | None,
) -> None:
    """The claimed run's attempt, from its start to its end (or its hand-over, raised on)."""
    settings: Settings = ctx["settings"]
    running: RunningRuns = ctx["running"]
    lease, run, _, earlier, known_children = started
    run_id, session = lease.run_id, lease.session
    _count_start(run, session)
    attempt = _start_attempt(session_id, run, writer)
    running.add(run_id, session_id, on_stop=writer.stop, on_steer=lease.inbox.sent.set)
    metrics.ACTIVE_RUNS.inc()
    outcome = "failed"
    ended: Ending | None = None  # the terminal event this attempt wrote, if it did
    slot = FollowerSlot(ctx["redis"], Keys(settings.key_prefix), tenant, session_id, run_id) if tenant else None
    children = Children(lease, run, known_children, writer, settings, tenant or PUBLIC_TENANT, slot)
    try:
        async with _keeper(lease, settings, running):
            with _in_attempt(attempt):
                completed = await _generate(ctx, session_id, run, earlier, writer, meter, kept, attempt, children)
        await writer.finish(completed)
        outcome, ended = "completed", completed
    except (
        WaitingForInput,
        WaitingForChildren,
    ) as waiting:  # the run waits for answers or children, without this worker
        outcome, ended = await _wait(writer, meter, lease, run, waiting, attempt)
    except (LeaseLost, asyncio.CancelledError) as stopped:
        # One reason why the run stopped, recorded by whoever stopped it; none means arq is stopping.
        stop = Stop.LEASE_LOST if isinstance(stopped, LeaseLost) else running.stop_reason(run_id)
        if stop is None:  # SIGTERM: hand the run over now rather than let its lease run out
            outcome = "handed_over"
            attempt = _handed_over(attempt, await _hand_over(lease))
            raise
        if isinstance(stopped, asyncio.CancelledError):
            _uncancel()
        outcome = stop.value
        attempt = _handed_over(attempt, isinstance(stopped, HandedOver))  # as Redis lost its events
        ended = await _end_stopped(writer, meter, lease, stop, settings)
    except Exception as exc:  # the run boundary: every failure ends the run with run.failed
        ended = await _failed(exc, writer, meter, lease, settings)
    finally:
        writer.close()
        running.discard(run_id)
        metrics.ACTIVE_RUNS.dec()
        metrics.RUNS.labels(outcome).inc()
        _end_attempt(session_id, run, attempt, outcome, ended, lease.runs.keys.queue)
    await children.end_orphans(ended)
    if ended is not None:  # its end written, its next run's job pushed: a reaper has nothing to look at
        lease.runs.leases.ended(ctx["job_id"])


async def _claim(ctx: dict[str, Any], session_id: str, run_id: str) -> tuple[Started | None, RunLog | None]:
    """Claim the run (None if it is not ours to start), and a takeover's record as it goes on (None:
    it starts over, or it is no takeover)."""
    settings: Settings = ctx["settings"]
    kept: RunLog | None = None

    async def decide() -> Takeover:  # a takeover: on from the run's record, or over
        nonlocal kept
        try:
            plan = lambda: plan_takeover(ctx["store"], ctx["providers"], settings, session_id, run_id)  # noqa: E731
            kept = await ride_out(plan, f"takeover plan of run {run_id}")
        except Exception:  # never strand the run: it starts over, as it did before runs went on
            logger.warning(
                "run %s of session %s: could not read its record; it starts over", run_id, session_of(session_id)
            )
        return "restart" if kept is None else kept.last_seq

    try:
        runs: RunWrites = ctx["runs"]
        started = await runs.start_run(session_id, run_id, ctx["job_id"], takeover=decide)
    except Exception as exc:
        # Redis stayed out of reach past the ride-out, or a bug: the run may still be queued, so its
        # job must not end here (arq would finish it and strand the run): arq runs it again, later
        # each time it failed so (Redis answers now, or its finish failed too and the job's short
        # in-progress mark lapses: worker/process/main.py).
        defer = min(MAX_START_DEFER_SECONDS, ctx.get("job_try", 1))
        logger.warning(
            "run %s of session %s could not start (%s); its job runs again in %d s",
            run_id,
            session_of(session_id),
            exc,
            defer,
        )
        raise Retry(defer=defer) from exc
    return started, kept


async def _end_stopped(
    writer: EventWriter, meter: UsageMeter, lease: RunLease, stop: Stop, settings: Settings
) -> Ending | None:
    """End a run stopped by a cancel or a blocked loop: the terminal event written, if any."""
    if stop is Stop.CANCELLED:
        logger.info("run %s of session %s cancelled", lease.run_id, lease.session)
        cancelled = RunCancelled(run_id=lease.run_id, reason=CANCELLED_BY_REQUEST, usage=meter.total(cut=True))
        return await _finish(writer, cancelled, lease)
    if stop is Stop.BLOCKED_LOOP:
        message = (
            f"the agent blocked the worker's event loop for over {settings.blocked_loop_seconds:g} s: {HOW_TO_FIX}"
        )
        error = ErrorInfo(type="blocked_event_loop", message=message)
        return await _finish(writer, RunFailed(run_id=lease.run_id, error=error, usage=meter.total(cut=True)), lease)
    # The run is another worker's now, or gone: it must not write its end.
    logger.warning("run %s of session %s stopped: lease lost", lease.run_id, lease.session)
    return None


async def _wait(
    writer: EventWriter,
    meter: UsageMeter,
    lease: RunLease,
    run: RunRecord,
    waiting: WaitingForInput | WaitingForChildren,
    attempt: traces.AttemptSpan | None,
) -> tuple[str, Ending | None]:
    if isinstance(waiting, WaitingForInput):
        if attempt is not None:
            attempt.asked(waiting.questions)  # its span ends waiting
        return await _wait_for_input(writer, meter, lease, run, waiting.questions)
    if attempt is not None:
        attempt.awaits(waiting.children)
    return await _wait_for_children(writer, meter, lease, run, waiting)


async def _wait_for_input(
    writer: EventWriter, meter: UsageMeter, lease: RunLease, run: RunRecord, questions: list[Question]
) -> tuple[str, Ending | None]:
    """Record the questions asked at once and give the run up; what became of it (a metrics label),
    and the terminal event written if the run ended instead (a cancel was pending)."""
    try:
        await writer.flush()
        await meter.settle()  # recorded while the lease is this worker's: the resume goes on counting
        asked = await lease.ask([*run.asked, *questions], questions)
    except LeaseLost:
        logger.warning("run %s of session %s lost its lease as it asked for input", run.run_id, lease.session)
        return "lease_lost", None
    except Exception:  # its lease lapses, and the worker that takes it over asks again
        logger.error("run %s of session %s could not ask for input", run.run_id, lease.session, exc_info=True)
        return "failed", None
    if asked is Asked.CANCEL:
        cancelled = RunCancelled(run_id=run.run_id, reason=CANCELLED_BY_REQUEST, usage=meter.total())
        return "cancelled", await _finish(writer, cancelled, lease)
    waits_for = ", ".join(question.input_id for question in questions)
    logger.info("run %s of session %s waits for answers to %s", run.run_id, lease.session, waits_for)
    return "waiting", None


async def _wait_for_children(
    writer: EventWriter, meter: UsageMeter, lease: RunLease, run: RunRecord, waiting: WaitingForChildren
) -> tuple[str, Ending | None]:
    """Give the run up until its children ended (await_children.lua); what became of it, as
    `_wait_for_input` says."""
    try:
        await writer.flush()
        await meter.settle()
        awaited = await lease.await_children(waiting.children, waiting.wake_on_first)
    except LeaseLost:
        logger.warning("run %s of session %s lost its lease as it waited for children", run.run_id, lease.session)
        return "lease_lost", None
    except Exception:  # its lease lapses, and the worker that takes it over spawns (finds) them again
        logger.error(
            "run %s of session %s could not wait for its children",
            run.run_id,
            lease.session,
            exc_info=True,
        )
        return "failed", None
    if awaited is Awaited.CANCEL:
        cancelled = RunCancelled(run_id=run.run_id, reason=CANCELLED_BY_REQUEST, usage=meter.total())
        return "cancelled", await _finish(writer, cancelled, lease)
    logger.info(
        "run %s of session %s waits for children %s",
        run.run_id,
        lease.session,
        ", ".join(waiting.children),
    )
    return "waiting", None


async def _end_at_start(
    writer: EventWriter, meter: UsageMeter, lease: RunLease, run: RunRecord, verdict: StartVerdict, job_id: str
) -> None:
    """End a run its start found cancelled, or out of attempts (its job `job_id`)."""
    usage = meter.total()  # what its earlier attempts spent
    ending: RunCancelled | RunFailed = (
        RunCancelled(run_id=run.run_id, reason=CANCELLED_BY_REQUEST, usage=usage)
        if verdict is StartVerdict.CANCEL
        else RunFailed(
            run_id=run.run_id, error=ErrorInfo(type="attempts_exhausted", message=_exhausted(run)), usage=usage
        )
    )
    metrics.RUNS.labels("cancelled" if verdict is StartVerdict.CANCEL else "failed").inc()
    ended = await _finish(writer, ending, lease)
    if ended is not None:
        lease.runs.leases.ended(job_id)
    if tracing.ON:
        by = "cancel" if verdict is StartVerdict.CANCEL else "exhausted"
        run_spans.write_unheld_end(run, lease.session_id, ended, by, lease.runs.keys.queue)


def _start_attempt(session_id: str, run: RunRecord, writer: EventWriter) -> traces.AttemptSpan | None:
    """The span of the attempt starting here, when traced."""
    if not tracing.ON:
        return None
    if run.started_as == "takeover":  # the attempt before never ended its span, unless it handed the run over
        run_spans.write_lost_attempt(
            run, session_id, run.attempt - 1, run.previous_started_as, run.previous_started_at, "takeover"
        )
    attempt = traces.AttemptSpan(run, session_id)
    writer.first_text = attempt.first_text
    return attempt


def _in_attempt(attempt: traces.AttemptSpan | None) -> AbstractContextManager[object]:
    """The attempt's context, current around the agent's code (when traced)."""
    return nullcontext() if attempt is None else attempt.current()


def _handed_over(attempt: traces.AttemptSpan | None, handed: bool) -> traces.AttemptSpan | None:
    """A run handed over to another worker ends its attempt's span here: the next attempt sees the
    hand-over in the record (`handed_over`) and writes no stand-in for it. What is left to end."""
    if attempt is None or not handed:
        return attempt
    attempt.end("handed_over")
    return None


def _end_attempt(
    session_id: str,
    run: RunRecord,
    attempt: traces.AttemptSpan | None,
    outcome: str,
    ended: Ending | None,
    queue: str,
) -> None:
    """End this attempt's span, and the run's if it ended here (`queue`: its job's). Unless the run
    ended or waits for an answer, the span is left unended: the run is another worker's, or will be
    once its lease lapses, and that worker writes a stand-in under the span's id (a lease lost, an
    end or a question that could not be written)."""
    if attempt is None or (ended is None and outcome != "waiting"):
        return
    attempt.end(outcome, ended.error.type if isinstance(ended, RunFailed) else None)
    if ended is not None:
        run_spans.write_run(run, session_id, ended, queue, attempt.model)


def _keeper(lease: RunLease, settings: Settings, running: RunningRuns) -> LeaseKeeper:
    """The lease's renewals while the attempt runs: a cancel or a lost lease stops the run."""
    run_id = lease.run_id
    return LeaseKeeper(
        lease,
        settings.lease_ms,
        on_cancel=lambda: running.cancel(run_id),
        on_lost=lambda: running.stop(run_id, Stop.LEASE_LOST),
    )


async def _failed(
    exc: Exception, writer: EventWriter, meter: UsageMeter, lease: RunLease, settings: Settings
) -> Ending | None:
    """The run's end when its attempt raised: run.failed, with the error as the API says it."""
    run_id, session = lease.run_id, lease.session
    logger.warning("run %s of session %s failed: %s", run_id, session, exc, exc_info=True)
    if isinstance(exc, ProviderError):
        metrics.PROVIDER_ERRORS.labels(writer.provider, exc.kind).inc()
    error = _error_info(exc, settings)
    return await _finish(writer, RunFailed(run_id=run_id, error=error, usage=meter.total(cut=True)), lease)


def _count_start(run: RunRecord, session: str) -> None:
    # The pid says which worker holds the run: the one to kill to see a takeover (`tokentail dev` names its
    # workers' pids as it starts them).
    logger.info(
        "run %s of session %s started (attempt %d, %s) in worker pid %d",
        run.run_id,
        session,
        run.attempt,
        run.started_as,
        os.getpid(),
    )
    if run.started_as != "takeover":  # a takeover appends run.continued (or run.retrying, run.started)
        metrics.EVENTS_APPENDED.labels("run.started").inc()
    if run.started_as == "start" and run.queued_at is not None and run.started_at is not None:
        metrics.QUEUE_WAIT.observe(max(0.0, run.started_at - run.queued_at))  # both Redis times
    elif run.started_as == "takeover":
        metrics.TAKEOVERS.inc()


async def _finish(writer: EventWriter, ending: RunCancelled | RunFailed, lease: RunLease) -> Ending | None:
    """Write the run's terminal event: `ending`, or None if it could not."""
    try:
        await asyncio.shield(writer.finish(ending))
    except Exception:  # Redis gone or lease lost: nothing more this worker can do for the run
        logger.error("run %s of session %s could not record its end", lease.run_id, lease.session, exc_info=True)
        return None
    return ending


async def _hand_over(lease: RunLease) -> bool:
    """Whether the run was handed over."""
    try:
        requeued = await asyncio.shield(lease.hand_over())
    except Exception:  # the lease will expire instead, and a reaper requeue the run
        logger.error("run %s of session %s could not be handed over", lease.run_id, lease.session, exc_info=True)
        return False
    logger.info("run %s of session %s handed over: %s", lease.run_id, lease.session, requeued)
    return requeued is Requeue.REQUEUED


def _exhausted(run: RunRecord) -> str:
    return f"gave up after {run.attempt} attempts: the workers running them stopped"


async def _generate(
    ctx: dict[str, Any],
    session_id: str,
    run: RunRecord,
    earlier: list[RunRecord],
    writer: EventWriter,
    meter: UsageMeter,
    kept: RunLog | None,
    span: traces.AttemptSpan | None = None,
    children: Children | None = None,
) -> RunCompleted:
    """Run the agent; `earlier`: the session's runs that completed before it, as its start read them;
    `kept`: a takeover's record as it goes on, read when it was decided; `span`: the attempt's, when traced."""
    store: SessionStore = ctx["store"]
    settings: Settings = ctx["settings"]
    providers: Providers = ctx["providers"]
    history = transcript(earlier)
    # It goes on from its record (after an answer; taken over, unless it started over), and what
    # the record holds is not streamed again.
    log = kept
    if run.started_as == "resume":
        log = await ride_out(lambda: store.run_log(session_id, run), f"record read of run {run.run_id}")
    agent = load_agent(run.agent, settings)
    meter.reports = meter.reports or isinstance(agent, Agent)  # a model-driven agent's providers report usage
    if run.started_as == "takeover":  # the attempt before was cut short: what it streamed unreported is estimated
        estimate = lambda: meter.estimate_taken_over(store, session_id, run)  # noqa: E731
        await ride_out(estimate, f"usage estimate of run {run.run_id}")
    context = RunContext(writer, session_id, run, history, meter, log, children)
    attempt = context.this_attempt
    attempt.span = span
    try:
        async with asyncio.timeout(settings.run_timeout_seconds):
            if isinstance(agent, Agent):
                model_ref = run.model or agent.model or settings.model
                if span is not None:
                    span.model = model_ref
                provider, model = await providers.resolve(model_ref)
                writer.provider = parse_model(model_ref).provider
                policy = RetryPolicy.from_settings(settings)
                await run_model_agent(
                    agent, context, writer.lease, provider, model, policy, settings.tool_timeout_seconds
                )
            else:
                await agent(context)
    except BaseException as exc:
        if isinstance(exc, BaseExceptionGroup) and (waiting := waiting_in(exc)) is not None:
            raise waiting from None  # questions asked (children spawned) at once by a TaskGroup's tasks
        if isinstance(exc, Exception):
            # A framework's tool that raised out of its run (PydanticAI lets it) left its call open: end it.
            for call_id, by in attempt.open_tool_calls():
                await context.tool_finished(call_id, error=exc, agent=by)
        raise
    if not attempt.answered:
        logger.warning(
            "run %s of session %s: agent %s finished without an answer", run.run_id, session_of(session_id), run.agent
        )
        await writer.emit(Status(run_id=run.run_id, text=NO_ANSWER))
    # Its text not appended yet goes with its end, in one call (`EventWriter.finish`).
    return RunCompleted(run_id=run.run_id, output=attempt.output, usage=meter.total())


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _error_info(exc: Exception, settings: Settings) -> ErrorInfo:
    if isinstance(exc, InvalidRequest):
        return ErrorInfo(type="invalid_request", message=str(exc))
    if isinstance(exc, ProviderError):
        return ErrorInfo(type=exc.kind, message=str(exc))
    if isinstance(exc, AgentError):
        return ErrorInfo(type="agent_error", message=str(exc))
    if isinstance(exc, OutputTooLarge):
        return ErrorInfo(type="output_too_large", message=f"{exc} (TOKENTAIL_MAX_OUTPUT_CHARS)")
    if isinstance(exc, EventTooLarge):
        return ErrorInfo(type="event_too_large", message=str(exc))
    if isinstance(exc, SpawnRefused):  # a spawn past a bound its agent let through
        return ErrorInfo(type=exc.type, message=str(exc))
    if isinstance(exc, ChildFailed):  # a child's failure its agent let through
        return ErrorInfo(type="child_failed", message=str(exc))
    if isinstance(exc, StepTooLarge):
        return ErrorInfo(type="step_too_large", message=str(exc))
    if isinstance(exc, BlockingCall):
        return ErrorInfo(type="blocked_event_loop", message=str(exc))
    if isinstance(exc, TimeoutError):
        return ErrorInfo(type="timeout", message=f"the run exceeded {settings.run_timeout_seconds} s")
    # Anything else is a bug, in tokentail or in an agent: its text may hold anything (a URL with a
    # key, a query), so the client learns its class and the worker's log has the rest.
    return ErrorInfo(type="internal_error", message=f"the run failed ({type(exc).__name__}); see the worker's log")
