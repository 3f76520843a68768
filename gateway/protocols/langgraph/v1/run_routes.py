"""LangGraph's v1 runs: start one (streamed, in the background, waited for), read, join, cancel; and a
thread's stream. Included in routes.py's router (prefix `/langgraph`).

A stream's response carries `Content-Location` (`/threads/{tid}/runs/{rid}`) and `Location`
(`/threads/{tid}/runs/{rid}/stream?stream_mode=...`), relative to the API root: the Python SDK follows
`Location` with `Last-Event-ID` after a transport error, and that join resumes after the frame it names
(render.py), on any gateway.
"""

from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from tokentail.gateway.commands.turns import ChatTurns
from tokentail.gateway.deps import HubDep
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.protocols.langgraph import assistants, runs, threads
from tokentail.gateway.protocols.langgraph.access import ChatTurnsDep, StreamsDep
from tokentail.gateway.protocols.langgraph.state import shown_runs
from tokentail.gateway.protocols.langgraph.v1.render import DEFAULT_MODES, LangGraphEvents, check_modes
from tokentail.gateway.reading.renderer import Position
from tokentail.gateway.reading.response import ClientLeft, unless_left
from tokentail.gateway.reading.settling import wait_until_settled
from tokentail.gateway.reading.streams import SSE_HEADERS, Reserved, Streams
from tokentail.gateway.schemas import ERROR_RESPONSES, STREAM_RESPONSES
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.errors import RunNotFound
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord

router = APIRouter()

LastEventIdHeader = Annotated[
    str | None, Header(alias="Last-Event-ID", description="resume after this frame id; -1 (or -): from the start")
]
FRAME_ID = "a frame id: <event id>, <event id>.<frame>, or -1 (from the start)"
WAIT_SECONDS = 3600.0  # how long `/runs/wait` and `/join` wait for a run to settle


# -- runs -----------------------------------------------------------------------------------------


def _locations(thread_id: str, run_id: str, modes: tuple[str, ...], subgraphs: bool) -> dict[str, str]:
    """Where the run is (`Content-Location`, which both SDKs parse for its ids) and where its stream
    is joined (`Location`, which the Python SDK follows on a transport error): relative to the API
    root, which each SDK joins to its base URL. The stream's modes ride in the query."""
    run = f"/threads/{quote(thread_id, safe='')}/runs/{quote(run_id, safe='')}"
    query = urlencode([*(("stream_mode", mode) for mode in modes), ("stream_subgraphs", str(subgraphs).lower())])
    return {"Content-Location": run, "Location": f"{run}/stream?{query}"}


def _closed(session: SessionRecord) -> frozenset[str]:
    """The questions no stream stops at: those answered, and those of runs that ended without answers."""
    return frozenset(
        input_id
        for run in session.runs
        for input_id in (*run.answers, *(run.waiting_for if run.finished_seq is not None else ()))
    )


async def _open_run(
    streams: Streams,
    thread_id: str,
    session_id: str,
    run: RunRecord,
    modes: tuple[str, ...],
    subgraphs: bool,
    position: Position | None,
    *,
    reserved: Reserved | None = None,
    cancel_on_leave: ChatTurns | None = None,
    fresh: bool = False,
) -> Response:
    """A stream of `run` (and its children), to its end or the question it stops at. `position`: what
    the client has (None: nothing, the stream opens with `metadata`). `cancel_on_leave`: a client that
    leaves before the stream ends cancels the run (`on_disconnect: cancel`)."""
    session = await streams.store.get_session(session_id)
    run = session.run(run.run_id) or run
    assert run.queued_seq is not None
    start = run.queued_seq - 1
    has = position or Position(start)
    if has.after < start:
        has = Position(start)
    before = await threads.session_events(streams.store, session_id, until=start) if start else []
    shown = [shown.run_id for shown in shown_runs(session)]
    opening = {"run_id": run.run_id, "attempt": max(run.attempt, 1)} if position is None or fresh else None
    events = LangGraphEvents(
        thread_id,
        run.run_id,
        modes,
        before=before,
        runs=shown,
        subgraphs=subgraphs,
        quiet_until=has.after,
        within=has.within,
        answered=_closed(session),
        opening=opening,
    )
    on_close = None
    if cancel_on_leave is not None:

        async def on_close() -> None:
            # The client left before the run's end: cancel it, as LangGraph does (not when the gateway
            # stops: its clients reconnect to another).
            if not events.finished and not streams.hub.stopping:
                await cancel_on_leave.runs.cancel_run(session_id, run.run_id)

    headers = _locations(thread_id, run.run_id, modes, subgraphs)
    return await streams.open(
        session_id,
        start,
        events,
        "langgraph",
        headers=headers,
        resuming=not fresh,
        on_close=on_close,
        reserved=reserved,
        until_idle=False,
    )


async def _started(turns: ChatTurns, thread_id: str | None, body: runs.RunCreate) -> tuple[str, str, RunRecord, int]:
    """The run the body starts, or resumes (`command.resume`): with the id after which the client is
    owed its events (the answer's, for a resume; else before the run)."""
    if body.command is not None and body.command.resume is not None:
        return await runs.resume_run(turns, thread_id, body)
    thread_id, session_id, run = await runs.start_run(turns, thread_id, body)
    assert run.queued_seq is not None
    return thread_id, session_id, run, run.queued_seq - 1


async def _stream(turns: ChatTurns, streams: Streams, thread_id: str | None, body: runs.RunCreate) -> Response:
    modes = check_modes(body.modes) or ("values",)
    async with streams.reserve() as reserved:  # the stream's slot first: a 429 started nothing
        thread_id, session_id, run, after = await _started(turns, thread_id, body)
        return await _open_run(
            streams,
            thread_id,
            session_id,
            run,
            modes,
            body.stream_subgraphs,
            Position(after),
            reserved=reserved,
            cancel_on_leave=turns if body.on_disconnect == "cancel" else None,
            fresh=True,
        )


@router.post("/threads/{thread_id}/runs/stream", responses=STREAM_RESPONSES, response_class=StreamingResponse)
async def stream_run(thread_id: str, body: runs.RunCreate, turns: ChatTurnsDep, streams: StreamsDep) -> Response:
    """Start a run (or resume the waiting one: `command.resume`) and stream it in `stream_mode`."""
    return await _stream(turns, streams, thread_id, body)


@router.post("/runs/stream", responses=STREAM_RESPONSES, response_class=StreamingResponse)
async def stream_threadless_run(body: runs.RunCreate, turns: ChatTurnsDep, streams: StreamsDep) -> Response:
    """A run of a thread made for it (its id in `Content-Location`)."""
    return await _stream(turns, streams, None, body)


async def _create(turns: ChatTurns, thread_id: str | None, body: runs.RunCreate) -> Response:
    modes = check_modes(body.modes)
    thread_id, session_id, run, _ = await _started(turns, thread_id, body)
    session = await turns.store.get_session(session_id)
    found = session.run(run.run_id) or run
    headers = _locations(thread_id, run.run_id, modes, body.stream_subgraphs)
    body_json = runs.run_json(thread_id, found, session, assistants.assistant_id_of(found.agent or body.assistant_id))
    return _json(body_json, headers)


def _json(value: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(value, headers=headers)


@router.post("/threads/{thread_id}/runs", responses=ERROR_RESPONSES)
async def create_run(thread_id: str, body: runs.RunCreate, turns: ChatTurnsDep) -> Response:
    """Start a run in the background: its `Run`."""
    return await _create(turns, thread_id, body)


@router.post("/runs", responses=ERROR_RESPONSES)
async def create_threadless_run(body: runs.RunCreate, turns: ChatTurnsDep) -> Response:
    return await _create(turns, None, body)


async def _settled_values(
    request: Request, turns: ChatTurns, hub: StreamHub, thread_id: str, session_id: str, run: RunRecord, after: int
) -> dict[str, Any]:
    """The thread's values once `run` ended or stopped at a question (with `__interrupt__` then); a run
    that failed: `{"__error__": {"error", "message"}}`, which the SDKs raise."""
    try:
        await unless_left(
            request.receive, wait_until_settled(hub, session_id, run.run_id, after, WAIT_SECONDS, "langgraph")
        )
    except ClientLeft:
        return {}
    session, events = await threads.read_thread(turns.store, session_id)
    ended = session.run(run.run_id) or run
    if ended.status == "failed" and ended.error is not None:
        return {"__error__": {"error": ended.error.type, "message": ended.error.message}}
    values = threads.state_json(thread_id, session, events)
    answer = dict(values["values"])
    if values["interrupts"]:
        answer["__interrupt__"] = values["interrupts"]
    return answer


async def _wait(
    request: Request, turns: ChatTurns, hub: StreamHub, thread_id: str | None, body: runs.RunCreate
) -> Response:
    thread_id, session_id, run, after = await _started(turns, thread_id, body)
    values = await _settled_values(request, turns, hub, thread_id, session_id, run, after)
    headers = _locations(thread_id, run.run_id, DEFAULT_MODES, False)
    headers["Location"] = f"{headers['Content-Location']}/join"
    return _json(values, headers)


@router.post("/threads/{thread_id}/runs/wait", responses=ERROR_RESPONSES)
async def wait_run(
    thread_id: str, body: runs.RunCreate, request: Request, turns: ChatTurnsDep, hub: HubDep
) -> Response:
    """Start a run and answer, once it ends (or stops at a question), with the thread's values."""
    return await _wait(request, turns, hub, thread_id, body)


@router.post("/runs/wait", responses=ERROR_RESPONSES)
async def wait_threadless_run(body: runs.RunCreate, request: Request, turns: ChatTurnsDep, hub: HubDep) -> Response:
    return await _wait(request, turns, hub, None, body)


async def _run_of(turns: ChatTurns, thread_id: str, run_id: str) -> tuple[str, SessionRecord, RunRecord]:
    """A session-level run of the thread (a run rolled back is gone, as LangGraph's is)."""
    session_id, session = await threads.existing_thread(turns, thread_id)
    run = session.run(run_id)
    if run is None or not run.in_conversation:
        raise RunNotFound(thread_id, run_id)
    return session_id, session, run


@router.get("/threads/{thread_id}/runs", responses=ERROR_RESPONSES)
async def list_runs(
    thread_id: str, turns: ChatTurnsDep, limit: int = 10, offset: int = 0, status: str | None = None
) -> list[dict[str, Any]]:
    """The thread's runs, newest first (its own: not child runs, nor those rolled back)."""
    _, session = await threads.existing_thread(turns, thread_id)
    listed = [
        runs.run_json(thread_id, run, session, assistants.assistant_id_of(run.agent or "assistant"))
        for run in reversed(shown_runs(session))
    ]
    listed = [run for run in listed if status in (None, "", run["status"])]
    return listed[offset : offset + limit]


@router.get("/threads/{thread_id}/runs/{run_id:lg_id}", responses=ERROR_RESPONSES)
async def get_run(thread_id: str, run_id: str, turns: ChatTurnsDep) -> dict[str, Any]:
    _, session, run = await _run_of(turns, thread_id, run_id)
    return runs.run_json(thread_id, run, session, assistants.assistant_id_of(run.agent or "assistant"))


@router.get("/threads/{thread_id}/runs/{run_id}/join", responses=ERROR_RESPONSES)
async def join_run(thread_id: str, run_id: str, request: Request, turns: ChatTurnsDep, hub: HubDep) -> Response:
    """Wait for the run to end (or stop at a question): the thread's values then."""
    session_id, _, run = await _run_of(turns, thread_id, run_id)
    after = (run.queued_seq or 1) - 1
    return _json(await _settled_values(request, turns, hub, thread_id, session_id, run, after))


def _position(last_event_id: str | None) -> Position | None:
    """What a join's `Last-Event-ID` says the client has: None for none, `-1` or `-` (from the start)."""
    if last_event_id is None or last_event_id.strip() in ("", "-1", "-"):
        return None
    return Position.of(last_event_id.strip(), FRAME_ID)


@router.get("/threads/{thread_id}/runs/{run_id}/stream", responses=STREAM_RESPONSES, response_class=StreamingResponse)
async def join_run_stream(
    thread_id: str,
    run_id: str,
    turns: ChatTurnsDep,
    streams: StreamsDep,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    stream_subgraphs: bool = False,
    cancel_on_disconnect: bool = False,
    last_event_id: LastEventIdHeader = None,
) -> Response:
    """The run's stream, on any gateway: after `Last-Event-ID` (a frame id), or from the run's start
    (none, `-1`); to the run's end, or the question it stops at. No `stream_mode`: values,
    messages-tuple, updates and custom."""
    modes = check_modes(stream_mode or []) or DEFAULT_MODES
    session_id, _, run = await _run_of(turns, thread_id, run_id)
    position = _position(last_event_id)
    leave = turns if cancel_on_disconnect else None
    return await _open_run(
        streams, thread_id, session_id, run, modes, stream_subgraphs, position, cancel_on_leave=leave
    )


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=204, responses=ERROR_RESPONSES)
async def cancel_run(
    thread_id: str,
    run_id: str,
    request: Request,
    turns: ChatTurnsDep,
    hub: HubDep,
    action: Literal["interrupt", "rollback"] = "interrupt",
    wait: bool = False,
) -> Response:
    """Cancel the run (and its children); `rollback`: also left out of the thread, as if never asked.
    `wait`: answer once it has ended."""
    session_id, _, run = await _run_of(turns, thread_id, run_id)
    await turns.runs.cancel_run(session_id, run_id, rollback=action == "rollback")
    if wait and run.active:
        after = (run.queued_seq or 1) - 1
        await _settled_values(request, turns, hub, thread_id, session_id, run, after)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/stream", responses=STREAM_RESPONSES, response_class=StreamingResponse)
async def join_thread_stream(
    thread_id: str,
    turns: ChatTurnsDep,
    streams: StreamsDep,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    last_event_id: LastEventIdHeader = None,
) -> Response:
    """The thread's runs as they go, each opened by its `metadata`: after `Last-Event-ID`, from the
    thread's start (`-`), or from the active run's start (none); to the end of the runs active or
    queued (an idle thread: an empty stream). `stream_mode` `run_modes` (the SDK's default) is the
    join's default modes."""
    asked = [mode for mode in stream_mode or [] if mode != "run_modes"]
    modes = check_modes(asked) or DEFAULT_MODES
    session_id, session = await threads.existing_thread(turns, thread_id)
    given = (last_event_id or "").strip()
    if given in ("-", "-1"):
        position = Position(0)
    elif given:
        position = Position.of(given, FRAME_ID)
    else:
        active = session.active_run
        position = Position((active.queued_seq or 1) - 1) if active is not None else Position(session.last_event_id)
    if session.active_run is None and position.after >= session.last_event_id:
        return Response(b"", media_type="text/event-stream", headers=SSE_HEADERS)
    return await _thread_stream(streams.store, streams, thread_id, session, modes, position)


async def _thread_stream(
    store: SessionStore,
    streams: Streams,
    thread_id: str,
    session: SessionRecord,
    modes: tuple[str, ...],
    position: Position,
) -> Response:
    """Every run of the thread from `position`, read from the start of the run the client was shown then."""
    start = position.after
    while (going := session.run_shown_at(start)) is not None and (going.queued_seq or 0) - 1 < start:
        start = (going.queued_seq or 1) - 1
    before = await threads.session_events(store, session.session_id, until=start) if start else []
    shown = [run.run_id for run in shown_runs(session, before=start + 1)]
    events = LangGraphEvents(
        thread_id,
        None,
        modes,
        before=before,
        runs=shown,
        quiet_until=position.after,
        within=position.within,
        answered=_closed(session),
        hidden=frozenset(run.run_id for run in session.runs if not run.in_conversation),
    )
    return await streams.open(session.session_id, start, events, "langgraph")
