"""LangGraph threads: a thread is a session, the chat of its `thread_id` (as AG-UI's `threadId`:
gateway/access/ids.py `chat_session_id`), so any gateway finds it, and another tenant's is a 404.

A thread made by `POST /threads` is a session with no run yet (its `metadata` the session's); one named
by a run's `if_not_exists: create` is made by that run. Its status: `busy` while a run is queued or
running, `interrupted` while its run waits for answers (LangGraph's interrupts), `error` after a
failed run, else `idle`.
"""

import time
import uuid
from typing import Any, Literal

from tokentail.gateway.commands.turns import ChatTurns
from tokentail.gateway.protocols.langgraph.state import (
    checkpoint,
    checkpoint_name,
    conversation_of,
    iso,
    shown_runs,
    thread_interrupts,
    values_of,
)
from tokentail.shared.store.reads import SessionStore, StoredEvent
from tokentail.shared.vocabulary.errors import SessionExists, SessionNotFound
from tokentail.shared.vocabulary.records import SessionRecord

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
READ_AT_ONCE = 1000  # events a read of a thread's history takes at a time


async def thread_session(turns: ChatTurns, thread_id: str) -> str:
    """The session of thread `thread_id`, if the caller may use it (another tenant's: 404)."""
    return await turns.session(thread_id)


def new_thread_id() -> str:
    return str(uuid.uuid4())


def thread_status(session: SessionRecord) -> ThreadStatus:
    run = session.active_run
    if run is not None:
        return "interrupted" if thread_interrupts(session) else "busy"
    runs = shown_runs(session)
    return "error" if runs and runs[-1].status == "failed" else "idle"


async def session_events(store: SessionStore, session_id: str, until: int | None = None) -> list[StoredEvent]:
    """The session's events from its first (up to `until`, if given)."""
    events: list[StoredEvent] = []
    after = 0
    while stored := await store.read(session_id, after, READ_AT_ONCE):
        events += stored
        after = stored[-1].seq
        if until is not None and after >= until:
            return [event for event in events if event.seq <= until]
    return events


async def read_thread(store: SessionStore, session_id: str) -> tuple[SessionRecord, list[StoredEvent]]:
    session = await store.get_session(session_id)
    return session, await session_events(store, session_id)


def updated_at(session: SessionRecord) -> float:
    times = [t for run in session.runs for t in (run.finished_at, run.started_at, run.queued_at) if t is not None]
    return max([session.created_at, *times])


def thread_json(thread_id: str, session: SessionRecord, events: list[StoredEvent]) -> dict[str, Any]:
    """The `Thread` LangGraph's server answers: its values, status and interrupts (by task: the run)."""
    interrupts = thread_interrupts(session)
    active = session.active_run
    return {
        "thread_id": thread_id,
        "created_at": iso(session.created_at),
        "updated_at": iso(updated_at(session)),
        "metadata": session.metadata,
        "status": thread_status(session),
        "values": values_of(conversation_of(events), shown_runs(session)),
        "interrupts": {active.run_id: interrupts} if active is not None and interrupts else {},
    }


def state_json(thread_id: str, session: SessionRecord, events: list[StoredEvent]) -> dict[str, Any]:
    """The thread's `ThreadState` now: its values, and while its run is active, that run as the task;
    while it waits for answers, with the interrupts (and `next` names it)."""
    interrupts = thread_interrupts(session)
    active = session.active_run
    tasks = []
    if active is not None:
        tasks.append(
            {
                "id": active.run_id,
                "name": "agent",
                "path": ["__pregel_pull", "agent"],
                "error": None,
                "interrupts": interrupts,
                "checkpoint": None,
                "state": None,
                "result": None,
            }
        )
    return {
        "values": values_of(conversation_of(events), shown_runs(session)),
        # Only a run that waits for answers is a paused step (useStream shows a `next` with no interrupt as
        # a breakpoint: a run read while its cancel lands is not one).
        "next": ["agent"] if interrupts else [],
        "tasks": tasks,
        "interrupts": interrupts,
        "checkpoint": checkpoint(thread_id, checkpoint_name(session, session.last_event_id)),
        "parent_checkpoint": None,
        "metadata": {**session.metadata, "thread_id": thread_id},
        "created_at": iso(updated_at(session)),
    }


async def create_thread(
    turns: ChatTurns, thread_id: str, metadata: dict[str, Any], if_exists: Literal["raise", "do_nothing"]
) -> str:
    """Make thread `thread_id` (a session with no run yet); `if_exists` `raise`: a 409 if it was made
    before, `do_nothing`: the one made before. Its session's id."""
    session_id = await thread_session(turns, thread_id)
    webhook = await turns.webhooks.url_for(turns.caller.tenant)
    session = SessionRecord(
        session_id=session_id, created_at=time.time(), tenant=turns.caller.tenant, metadata=metadata, webhook=webhook
    )
    if not await turns.runs.create_session(session) and if_exists == "raise":
        raise SessionExists(thread_id)
    return session_id


async def existing_thread(turns: ChatTurns, thread_id: str) -> tuple[str, SessionRecord]:
    """Thread `thread_id`'s session id and record: `SessionNotFound` (404) if it was never made."""
    session_id = await thread_session(turns, thread_id)
    try:
        return session_id, await turns.store.get_session(session_id)
    except SessionNotFound:
        raise SessionNotFound(thread_id) from None
