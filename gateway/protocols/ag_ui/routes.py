"""AG-UI endpoints, for `HttpAgent` (CopilotKit's runtime, `@ag-ui/client`) pointed at the gateway.

    POST /v1/ag-ui                    RunAgentInput: queue a run with the last user message, answer its events
    GET  /v1/ag-ui/{thread_id}         with `Last-Event-ID` (or `?last_event_id=`): the thread's events after
                                      it; without: the active run from its start, the thread so far first
                                      (`TokentailAgent.connect()`, gateway/static/tokentail-ag-ui.js); or 204
    POST /v1/ag-ui/{thread_id}/stop    cancel the active run (`TokentailAgent.abortRun()`)

`threadId` is the chat id (see gateway/access/ids.py). The thread's history stays in tokentail: a run's
input is the last user message, after the turns of the input's messages (a regenerated or edited turn
branches: gateway/commands/branching.py).
"""

import time
from typing import Annotated

from ag_ui.core import RunAgentInput
from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from tokentail.gateway.commands.branching import ag_ui_chat, message_text
from tokentail.gateway.commands.turns import ChatTurns
from tokentail.gateway.deps import (
    ChatIdPath,
    ChattingChatDep,
    ChatTurnsDep,
    ReadableChatDep,
    RunsDep,
    StoreDep,
    StreamsDep,
)
from tokentail.gateway.protocols.ag_ui.render import AgUiEvents, thread_messages
from tokentail.gateway.reading.feed import parse_last_event_id
from tokentail.gateway.reading.streams import Reserved, Streams
from tokentail.gateway.schemas import ERROR_RESPONSES, STREAM_RESPONSES, CancelAccepted, CancelRun
from tokentail.shared.errors import InputNotPending, InvalidInput, SessionExpired, SessionNotFound
from tokentail.shared.records import RunRecord

router = APIRouter(prefix="/v1/ag-ui", tags=["ag-ui"])


def _user_text(body: RunAgentInput) -> str:
    last = body.messages[-1] if body.messages else None
    if last is None or last.role != "user":
        raise InvalidInput("the last message must be the user's: it is the input of the run")
    text = message_text(last)
    if not text:
        raise InvalidInput("the last user message has no text")
    return text


def _answered(runs: list[RunRecord]) -> frozenset[str]:
    return frozenset(input_id for run in runs for input_id in run.answers)


def _before(runs: list[RunRecord], run_id: str) -> list[RunRecord]:
    return runs[: next(index for index, run in enumerate(runs) if run.run_id == run_id)]


@router.post("", responses=STREAM_RESPONSES, response_class=StreamingResponse)
async def run_agent(body: RunAgentInput, turns: ChatTurnsDep, streams: StreamsDep) -> Response:
    """Queue a run with the last user message and answer with its AG-UI events (`RUN_STARTED` with
    tokentail's run id ... `RUN_FINISHED`). The thread's session is made on its first run. With
    `resume` (the answer to the interrupt a waiting run finished with): the run goes on, or ends if
    the entry is `cancelled`, and these are its events from there."""
    session_id = await turns.session(body.thread_id)
    async with streams.reserve() as reserved:  # the stream's slot first: a 429 queued nothing
        if body.resume:
            return await _resume(body, session_id, turns, streams, reserved)
        session_id, run, _ = await turns.send(body.thread_id, session_id, ag_ui_chat(body.messages, _user_text(body)))
        assert run.queued_seq is not None
        session = await turns.store.get_session(session_id)
        events = AgUiEvents(body.thread_id, thread_messages(_before(session.runs, run.run_id)), run_id=run.run_id)
        return await streams.open(session_id, run.queued_seq - 1, events, "ag-ui", resuming=False, reserved=reserved)


async def _resume(
    body: RunAgentInput, session_id: str, turns: ChatTurns, streams: Streams, reserved: Reserved
) -> Response:
    assert body.resume is not None
    session = await turns.store.get_session(session_id)
    waiting = session.active_run
    if waiting is None or not waiting.waiting_for:
        raise InputNotPending("no run of this thread waits for an answer")
    entries = [entry for entry in body.resume if entry.interrupt_id in waiting.waiting_for]
    if not entries:
        raise InputNotPending(f"the thread's run waits for {waiting.waiting_for!r}: resume names other interrupts")
    if any(entry.status == "cancelled" for entry in entries):
        after = session.last_event_id
        # Only this run, and only while it still waits for these answers (another may have come first).
        await turns.runs.cancel_run(session_id, waiting.run_id, segment=waiting.segment)
    else:
        waiting, after = await turns.answer(session, {entry.interrupt_id: entry.payload for entry in entries})
    history = thread_messages(_before(session.runs, waiting.run_id))
    # Read from the run's start, quiet up to the answer: a drop after it knows what the run showed.
    events = AgUiEvents(
        body.thread_id,
        history,
        run_id=waiting.run_id,
        quiet_until=after,
        answered=frozenset(waiting.answers),
        continuing=True,
    )
    assert waiting.queued_seq is not None
    return await streams.open(session_id, waiting.queued_seq - 1, events, "ag-ui", resuming=False, reserved=reserved)


@router.get(
    "/{chat_id}",
    responses={**STREAM_RESPONSES, 204: {"description": "nothing to show"}},
    response_class=StreamingResponse,
)
async def thread_events(
    chat_id: ChatIdPath,
    session_id: ReadableChatDep,
    store: StoreDep,
    streams: StreamsDep,
    last_event_id: Annotated[str | None, Query(description="resume after this id; wins over the header")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """After an id: the thread's events that follow it, up to the end of the runs active or queued
    (a run resumed mid-way is read from its start, to know what is open, and sent from the id on).
    Without one: the active run from its start (or one that ended moments ago), opened by a
    `MESSAGES_SNAPSHOT` of the thread, so a client that connects mid-run rebuilds its messages."""
    position = last_event_id if last_event_id is not None else last_event_id_header
    after = parse_last_event_id(position) if position is not None else None  # a bad id is a 422, session or not
    try:
        session = await store.get_session(session_id)
    except SessionExpired:
        raise
    except SessionNotFound:
        return Response(status_code=204)  # a thread with no run yet
    if after is None:
        replayed = streams.run_to_replay(session, time.time())
        if replayed is None or replayed.queued_seq is None:
            return Response(status_code=204)
        history = thread_messages(_before(session.runs, replayed.run_id))
        answered = _answered(session.runs)
        events = AgUiEvents(chat_id, history, run_id=replayed.run_id, snapshot_first=True, answered=answered)
        return await streams.open(session_id, replayed.queued_seq - 1, events, "ag-ui")
    shown = session.run_shown_at(after)
    if shown is None:  # between runs
        history = thread_messages([run for run in session.runs if run.finished_seq and run.finished_seq <= after])
        return await streams.open(
            session_id, after, AgUiEvents(chat_id, history, answered=_answered(session.runs)), "ag-ui"
        )
    assert shown.queued_seq is not None
    history = thread_messages(_before(session.runs, shown.run_id))
    events = AgUiEvents(chat_id, history, quiet_until=after, answered=_answered(session.runs))
    return await streams.open(session_id, shown.queued_seq - 1, events, "ag-ui")


@router.post("/{chat_id}/stop", status_code=202, responses=ERROR_RESPONSES)
async def stop(session_id: ChattingChatDep, runs: RunsDep, body: CancelRun | None = None) -> CancelAccepted:
    """Cancel the thread's active run; idempotent (as `POST /v1/sessions/{sid}/cancel`). With
    `{"run_id"}` (the run the client shows), only that run, if it is still the active one."""
    outcome, run_id = await runs.cancel_run(session_id, body.run_id if body is not None else None)
    return CancelAccepted.of(outcome, run_id)
