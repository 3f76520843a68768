"""AG-UI endpoints, for `HttpAgent` (CopilotKit's runtime, `@ag-ui/client`) and TanStack AI's
`fetchServerSentEvents` pointed at the gateway.

    GET  /v1/ag-ui/capabilities       what tokentail's agent does (`HttpAgent.getCapabilities()`): resumable
                                      streams and push notifications, and how each works
    POST /v1/ag-ui                    RunAgentInput: queue a run with the last user message, answer its events;
                                      with `resume`, answer the interrupts a run waits on. With `Last-Event-ID`
                                      (TanStack AI's reconnect: the same POST again), no write: the rest of it
    GET  /v1/ag-ui?runId=&offset=     TanStack AI's `joinRun`: the run a client posted as `runId`, from its start
                                      (`offset=-1`), from now (`now`) or after `Last-Event-ID` (which wins)
    GET  /v1/ag-ui/{thread_id}         with `Last-Event-ID` (or `?last_event_id=`): the thread's events after
                                      it; without: the active run from its start, the thread so far first
                                      (`TokentailAgent.connect()`, gateway/static/tokentail-ag-ui.js); or 204
    POST /v1/ag-ui/{thread_id}/stop    cancel the active run (`TokentailAgent.abortRun()`)

`threadId` is the chat id (see gateway/access/ids.py). The thread's history stays in tokentail: a run's
input is the last user message, after the turns of the input's messages (a regenerated or edited turn
branches: gateway/commands/branching.py). A client's `runId` names the run it makes (the same POST sent
again, before it saw any id, streams that run again rather than making a second); RUN_STARTED carries
tokentail's run id. Event ids: gateway/protocols/ag_ui/render.py.
"""

import time
from dataclasses import dataclass
from typing import Annotated, Any

from ag_ui.core import RunAgentInput
from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from tokentail.gateway.access.ids import chat_session_id, idempotent_id
from tokentail.gateway.commands.turns import ChatTurns
from tokentail.gateway.deps import (
    AuthDep,
    CallerDep,
    ChatIdPath,
    ChattingChatDep,
    ChatTurnsDep,
    ReadableChatDep,
    RunsDep,
    SettingsDep,
    StoreDep,
    StreamsDep,
)
from tokentail.gateway.errors import describe
from tokentail.gateway.protocols.ag_ui.capabilities import capabilities_of
from tokentail.gateway.protocols.ag_ui.client_runs import client_run, name_client_run
from tokentail.gateway.protocols.ag_ui.messages import ag_ui_chat, message_text
from tokentail.gateway.protocols.ag_ui.render import (
    AgUiEvents,
    protocol_version,
    refused,
    thread_messages,
)
from tokentail.gateway.reading.renderer import Position
from tokentail.gateway.reading.streams import SSE_HEADERS, Reserved, Streams
from tokentail.gateway.schemas import ERROR_RESPONSES, STREAM_RESPONSES, CancelAccepted, CancelRun
from tokentail.shared.vocabulary.errors import (
    ClientRunNotFound,
    InputNotPending,
    InvalidInput,
    SessionExpired,
    SessionNotFound,
    TokentailError,
)
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord

router = APIRouter(prefix="/v1/ag-ui", tags=["ag-ui"])

AG_UI_FRAME_ID = "an AG-UI frame id: <event id> or <event id>.<frame>"
LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID", description="resume after this frame id")]


def _user_text(body: RunAgentInput) -> str:
    last = body.messages[-1] if body.messages else None
    if last is None or last.role != "user":
        raise InvalidInput("the last message must be the user's: it is the input of the run")
    text = message_text(last)
    if not text:
        raise InvalidInput("the last message has no text")
    return text


def _closed(runs: list[RunRecord]) -> frozenset[str]:
    """The questions no stream stops at: those answered, and those of runs that ended without their
    answers (cancelled, failed, expired): a replay goes past them."""
    return frozenset(
        input_id
        for run in runs
        for input_id in (*run.answers, *(run.waiting_for if run.finished_seq is not None else ()))
    )


def _before(runs: list[RunRecord], run_id: str) -> list[RunRecord]:
    return runs[: next(index for index, run in enumerate(runs) if run.run_id == run_id)]


def _run_id_of(turns: ChatTurns, body: RunAgentInput) -> str:
    """Tokentail's id for the run a client posts as `runId` with its last message: the same POST sent
    again names the same run (a client that reuses one `runId` for another message makes a new one)."""
    last = body.messages[-1] if body.messages else None
    said = (last.id, message_text(last)) if last is not None else ("", "")
    return idempotent_id("r_", turns.caller.tenant, "ag-ui", body.thread_id, body.run_id, *said)


@router.get("/capabilities")
async def capabilities(settings: SettingsDep) -> dict[str, Any]:
    """The agent's capabilities (AG-UI's `AgentCapabilities`, what `HttpAgent.getCapabilities()` reads):
    `transport.resumable` and `transport.pushNotifications`, with how each works under `custom`."""
    return capabilities_of(settings)


@router.post("", responses=STREAM_RESPONSES, response_class=StreamingResponse)
async def run_agent(
    body: RunAgentInput, turns: ChatTurnsDep, streams: StreamsDep, last_event_id: LastEventIdHeader = None
) -> Response:
    """Queue a run with the last user message and answer with its AG-UI events (`RUN_STARTED` with
    tokentail's run id ... `RUN_FINISHED`). The thread's session is made on its first run. With
    `resume` (the answers to the interrupts a waiting run finished with): the run goes on, or ends if
    an entry is `cancelled`, and these are its events from there; a resume that answers nothing open
    is a `RUN_ERROR`, and changes nothing. With `Last-Event-ID`, the client reconnects: nothing is
    written, and the stream goes on after that id."""
    position = Position.of(last_event_id, AG_UI_FRAME_ID) if last_event_id is not None else None
    session_id = await turns.session(body.thread_id)
    protocol = protocol_version(body.protocol_version)
    if position is not None:
        return await _reconnect(body, session_id, position, turns, streams, protocol)
    async with streams.reserve() as reserved:  # the stream's slot first: a 429 queued nothing
        if body.resume:
            return await _resume(body, session_id, turns, streams, reserved, protocol)
        run_id = _run_id_of(turns, body)
        sent = await _session_with(turns, session_id, run_id)  # sent again: that run, not a second
        if sent is not None:
            session, steered_at = sent, None
        else:
            session_id, made, steered = await turns.send(
                body.thread_id, session_id, ag_ui_chat(body.messages, _user_text(body)), run_id
            )
            session = await turns.store.get_session(session_id)
            run_id = made.run_id
            # A steer shows the run it steered from the steer on (one sent again, from now on).
            steered_at = (made.queued_seq or session.last_event_id + 1) - 1 if steered else None
        await name_client_run(turns.store, turns.caller.tenant, body.run_id, session_id, run_id, body.thread_id)
        run = session.run(run_id)
        assert run is not None
        shown = Shown(body.thread_id, session, run, protocol, client_run_id=body.run_id)
        fresh = steered_at is not None
        return await shown.open(streams, Position(steered_at or 0), fresh=fresh, reserved=reserved, resuming=False)


async def _session_with(turns: ChatTurns, session_id: str, run_id: str) -> SessionRecord | None:
    """The chat's session, if it has the run already (the POST that made it, sent again)."""
    try:
        session = await turns.store.get_session(session_id)
    except SessionNotFound:
        return None
    return session if session.run(run_id) is not None else None


async def _reconnect(
    body: RunAgentInput, session_id: str, position: Position, turns: ChatTurns, streams: Streams, protocol: str
) -> Response:
    """The same POST sent again with `Last-Event-ID`: the run it made (or steered, or went on with
    after its `resume`), after that id; the thread's events after it, if no run is found."""
    session = await turns.store.get_session(session_id)
    run = None if body.resume else session.run(_run_id_of(turns, body))
    chat = chat_session_id(turns.caller.tenant, body.thread_id)
    if run is None and (named := await client_run(turns.store, turns.caller.tenant, body.run_id, chat)) is not None:
        named_session, named_run, thread_id = named
        if thread_id == body.thread_id:
            session = session if named_session == session.session_id else await turns.store.get_session(named_session)
            run = session.run(named_run)
    if run is None:
        return await _thread_after(body.thread_id, session, position, streams, protocol, body.run_id)
    return await Shown(body.thread_id, session, run, protocol, client_run_id=body.run_id).open(streams, position)


async def _resume(
    body: RunAgentInput, session_id: str, turns: ChatTurns, streams: Streams, reserved: Reserved, protocol: str
) -> Response:
    assert body.resume is not None
    session = await turns.store.get_session(session_id)
    waiting = session.active_run
    try:
        if waiting is None or not waiting.waiting_for:
            raise InputNotPending("no run of this thread waits for an answer")
        entries = [entry for entry in body.resume if entry.interrupt_id in waiting.waiting_for]
        if not entries:
            raise InputNotPending(f"the thread's run waits for {waiting.waiting_for!r}: resume names other interrupts")
        if any(entry.status == "cancelled" for entry in entries):
            after = session.last_event_id
            # Only this run, and only while it still waits for these answers (another may have come first).
            await turns.runs.cancel_run(session_id, waiting.run_id, segment=waiting.segment)
            closed = frozenset({*waiting.answers, *waiting.waiting_for})  # none stops the stream: the run ends
        else:
            waiting, after = await turns.answer(session, {entry.interrupt_id: entry.payload for entry in entries})
            closed = frozenset(waiting.answers)
    except (InputNotPending, InvalidInput) as refused:
        # AG-UI's answer to a stale or partial resume: a stream that opens with RUN_ERROR, nothing changed.
        return _refused(refused, session.last_event_id)
    await name_client_run(turns.store, turns.caller.tenant, body.run_id, session_id, waiting.run_id, body.thread_id)
    # Read from the run's start, quiet up to the answer: a drop after it knows what the run showed.
    shown = Shown(body.thread_id, session, waiting, protocol, closed, body.run_id)
    return await shown.open(streams, Position(after), fresh=True, reserved=reserved, resuming=False)


def _refused(error: TokentailError, last_event_id: int) -> Response:
    body = refused(str(error), describe(error)[1], last_event_id)
    return Response(body, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("", responses={**STREAM_RESPONSES, 404: {"description": "no run of that id"}})
async def join_run(
    caller: CallerDep,
    auth: AuthDep,
    store: StoreDep,
    streams: StreamsDep,
    run_id: Annotated[str, Query(alias="runId", description="the `runId` the client posted the run as")],
    offset: Annotated[str, Query(description="`-1`: from the run's start; `now`: from now; or a frame id")] = "-1",
    last_event_id: LastEventIdHeader = None,
) -> Response:
    """TanStack AI's `joinRun(runId)`: the run a client posted (or resumed) as `runId`, on any gateway,
    to its end or its next interrupt, opened by `RUN_STARTED`. `Last-Event-ID` (its reconnect) wins
    over `offset`."""
    named = await client_run(store, caller.tenant, run_id, caller.session_id or "")  # a chat token's: its chat's
    if named is None:
        raise ClientRunNotFound(run_id)
    session_id, tokentail_run_id, thread_id = named
    await auth.chat_root(caller, thread_id, store)  # the caller's chat (a chat token's, or any with an API key)
    session = await store.get_session(session_id)
    run = session.run(tokentail_run_id)
    if run is None:
        raise ClientRunNotFound(run_id)
    shown = Shown(thread_id, session, run, protocol_version(None), client_run_id=run_id)
    if last_event_id is not None:
        return await shown.open(streams, Position.of(last_event_id, AG_UI_FRAME_ID))
    if offset == "now":
        return await shown.open(streams, Position(session.last_event_id), fresh=True)
    return await shown.open(streams, Position(0) if offset == "-1" else Position.of(offset, AG_UI_FRAME_ID))


@dataclass(frozen=True)
class Shown:
    """A stream of one run of a thread (to its end, or the interrupt that stops it), read from its start,
    quiet up to what the client has. `closed`: the questions it goes past (else `_closed`);
    `client_run_id`: the run id the client knows the stream by (`AgUiEvents`)."""

    thread_id: str
    session: SessionRecord
    run: RunRecord
    protocol: str
    closed: frozenset[str] | None = None
    client_run_id: str | None = None

    async def open(
        self,
        streams: Streams,
        position: Position,
        *,
        fresh: bool = False,
        snapshot_first: bool = False,
        reserved: Reserved | None = None,
        resuming: bool = True,
    ) -> Response:
        """After `position` (the run's start, if it is before it). `fresh`: the client has not been
        shown the run, which it joins at `position` (after an answer, a steer, or `offset=now`): the
        stream opens with `RUN_STARTED`, whose id is `position`'s. `snapshot_first`: and before that,
        the thread so far (a page that connects without an id)."""
        assert self.run.queued_seq is not None
        start = self.run.queued_seq - 1
        position = position if position.after >= start else Position(start)
        events = AgUiEvents(
            self.thread_id,
            thread_messages(_before(self.session.runs, self.run.run_id)),
            run_id=self.run.run_id,
            quiet_until=position.after,
            within=position.within,
            snapshot_first=snapshot_first,
            answered=self.closed if self.closed is not None else _closed(self.session.runs),
            continuing=fresh,
            protocol=self.protocol,
            client_run_id=self.client_run_id,
        )
        return await streams.open(self.session.session_id, start, events, "ag-ui", resuming=resuming, reserved=reserved)


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
    last_event_id_header: LastEventIdHeader = None,
    client_version: Annotated[
        str | None, Query(alias="protocolVersion", description="the AG-UI version the client declares")
    ] = None,
) -> Response:
    """After an id: the thread's events that follow it, up to the end of the runs active or queued.
    Without one: the active run from its start (or one that ended moments ago), opened by a
    `MESSAGES_SNAPSHOT` of the thread, so a client that connects mid-run rebuilds its messages."""
    given = last_event_id if last_event_id is not None else last_event_id_header
    position = Position.of(given) if given is not None else None  # a bad id is a 422, session or not
    try:
        session = await store.get_session(session_id)
    except SessionExpired:
        raise
    except SessionNotFound:
        return Response(status_code=204)  # a thread with no run yet
    protocol = protocol_version(client_version)
    if position is not None:
        return await _thread_after(chat_id, session, position, streams, protocol)
    replayed = streams.run_to_replay(session, time.time())
    if replayed is None or replayed.queued_seq is None:
        return Response(status_code=204)
    return await Shown(chat_id, session, replayed, protocol).open(streams, Position(0), snapshot_first=True)


async def _thread_after(
    thread_id: str,
    session: SessionRecord,
    position: Position,
    streams: Streams,
    protocol: str,
    client_run_id: str | None = None,
) -> Response:
    """The thread's events after `position`, up to the end of the runs active or queued: several runs
    on one stream, each closed before the next opens. Read from the start of the run the client was
    shown then, or of the one going when that one was queued, and so on back: a run queued behind
    another is shown once that one ends, as a stream read through them both showed it."""
    start = position.after
    while (going := session.run_shown_at(start)) is not None and going.queued_seq is not None:
        start = going.queued_seq - 1
    history = thread_messages([run for run in session.runs if run.finished_seq and run.finished_seq <= start])
    events = AgUiEvents(
        thread_id,
        history,
        quiet_until=position.after,
        within=position.within,
        answered=_closed(session.runs),
        protocol=protocol,
        client_run_id=client_run_id,
    )
    return await streams.open(session.session_id, start, events, "ag-ui")


@router.post("/{chat_id}/stop", status_code=202, responses=ERROR_RESPONSES)
async def stop(session_id: ChattingChatDep, runs: RunsDep, body: CancelRun | None = None) -> CancelAccepted:
    """Cancel the thread's active run; idempotent (as `POST /v1/sessions/{sid}/cancel`). With
    `{"run_id"}` (the run the client shows), only that run, if it is still the active one."""
    outcome, run_id = await runs.cancel_run(session_id, body.run_id if body is not None else None)
    return CancelAccepted.of(outcome, run_id)
