"""The arq job that runs one run of a session: `run.started`, deltas, then a terminal event."""

import asyncio
import logging
import secrets
from typing import Any

from shared.errors import LeaseLost
from shared.events import ErrorInfo, RunCompleted, RunFailed
from shared.records import RunRecord, transcript
from shared.settings import Settings
from shared.store import SessionStore
from worker.lease import LeaseKeeper
from worker.providers import resolve
from worker.providers.base import InvalidRequest, ModelRequest, TextDelta, Usage
from worker.writer import EventWriter

logger = logging.getLogger(__name__)


async def run_agent(ctx: dict[str, Any], session_id: str, run_id: str) -> None:
    store: SessionStore = ctx["store"]
    settings: Settings = ctx["settings"]
    lease_token = secrets.token_hex(16)
    run = await store.start_run(session_id, run_id, lease_token)
    if run is None:
        # A duplicate delivery, a deleted session, or a run another worker holds: nothing to do.
        logger.info("run %s of session %s is not ours to start", run_id, session_id)
        return
    logger.info("run %s of session %s started (attempt %d)", run_id, session_id, run.attempt)
    writer = EventWriter(store, session_id, run_id, lease_token, settings.flush_interval_ms / 1000)
    lease = LeaseKeeper(store, session_id, lease_token, settings.lease_ms)
    try:
        async with lease:
            completed = await _generate(store, session_id, run, writer, settings.run_timeout_seconds)
        await writer.emit(completed)
    except LeaseLost:
        logger.warning("run %s of session %s stopped: its append was fenced (lease lost)", run_id, session_id)
    except asyncio.CancelledError:
        if not lease.lost:
            raise  # arq is shutting down or aborting the job
        _uncancel()
        logger.warning("run %s of session %s stopped: lease lost", run_id, session_id)
    except Exception as exc:  # the run boundary: every failure ends the run with run.failed
        logger.warning("run %s of session %s failed: %s", run_id, session_id, exc, exc_info=True)
        try:
            await writer.emit(RunFailed(run_id=run_id, error=_error_info(exc, settings)))
        except LeaseLost:
            logger.warning("run %s of session %s could not record its failure: lease lost", run_id, session_id)
    finally:
        writer.close()


async def _generate(
    store: SessionStore, session_id: str, run: RunRecord, writer: EventWriter, time_limit: float
) -> RunCompleted:
    provider, model_name = resolve(run.model)
    session = await store.get_session(session_id)
    history = transcript([r for r in session.runs if r.status == "completed" and r.run_id != run.run_id])
    request = ModelRequest(model=model_name, input=run.input, history=history, params=run.params)
    usage: dict[str, Any] = {}
    async with asyncio.timeout(time_limit):
        async for chunk in provider.stream(request):
            if isinstance(chunk, TextDelta):
                await writer.delta(chunk.text)
            elif isinstance(chunk, Usage):
                usage = {"input_tokens": chunk.input_tokens, "output_tokens": chunk.output_tokens}
    await writer.flush()
    return RunCompleted(run_id=run.run_id, output=writer.text, usage=usage)


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _error_info(exc: Exception, settings: Settings) -> ErrorInfo:
    if isinstance(exc, InvalidRequest):
        return ErrorInfo(type="invalid_request", message=str(exc))
    if isinstance(exc, TimeoutError):
        return ErrorInfo(type="timeout", message=f"the run exceeded {settings.run_timeout_seconds} s")
    return ErrorInfo(type="internal_error", message=f"{type(exc).__name__}: {exc}")
