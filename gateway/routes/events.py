"""A session's events as SSE (or NDJSON, if asked for), resumable from `Last-Event-ID` or `?last_event_id=`;
with `?run=`, one run's events only (and with `subtree=1` its descendants': gateway/reading/run_filter.py)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from tokentail.gateway.deps import ReadableSessionDep, streams_for
from tokentail.gateway.encodings.ndjson import Ndjson
from tokentail.gateway.encodings.sse import NativeSse
from tokentail.gateway.reading.feed import parse_last_event_id
from tokentail.gateway.reading.response import Encoding
from tokentail.gateway.reading.run_filter import RunFilter
from tokentail.gateway.schemas import ERROR_RESPONSES
from tokentail.shared.vocabulary.errors import InvalidInput, RunNotFound

router = APIRouter(prefix="/v1/sessions", tags=["events"])


@router.get(
    "/{session_id}/events",
    name="stream_events",
    response_class=StreamingResponse,
    responses={
        **ERROR_RESPONSES,
        200: {"content": {"text/event-stream": {}, "application/x-ndjson": {}}},
        204: {"description": "nothing left"},
    },
)
async def stream_events(
    request: Request,
    access: ReadableSessionDep,
    last_event_id: Annotated[str | None, Query(description="resume after this id; wins over the header")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    accept: Annotated[str | None, Header()] = None,
    catch_up: Annotated[
        Literal["events", "snapshot"],
        Query(description="`snapshot`: a client far behind gets the events compacted into `snapshot` events first"),
    ] = "events",
    run: Annotated[
        str | None,
        Query(
            max_length=64,
            description="only this run's events (a sub-agent run's, or a session's own), with the session's ids; "
            "the stream ends once the run (with `subtree`, and its descendants) ended; `catch_up` does not apply",
        ),
    ] = None,
    subtree: Annotated[
        bool, Query(description="with `run`: the events of the run's descendants (sub-agent runs) too")
    ] = False,
) -> Response:
    """Server-Sent Events; with `Accept: application/x-ndjson`, one JSON event per line instead."""
    # One dependency (the caller and the session): the hot route calls this as FastAPI does.
    session_id, streams = access.session_id, streams_for(request, access.caller)
    after = parse_last_event_id(last_event_id if last_event_id is not None else last_event_id_header)
    settings = request.app.state.settings
    ndjson = accept is not None and "application/x-ndjson" in accept
    encoding: Encoding = Ndjson() if ndjson else NativeSse(settings.sse_retry_ms)
    snapshot = catch_up == "snapshot"
    if run is not None:
        session = await streams.store.get_session(session_id)
        if session.run(run) is None:
            raise RunNotFound(session_id, run)
        encoding = RunFilter(encoding, session.runs, run, subtree, after, settings.sse_heartbeat_seconds)
        if encoding.finished:  # the run (and its subtree) ended, and the client has its end
            return Response(status_code=204)
        snapshot = False  # a snapshot compacts every run's events
    elif subtree:
        raise InvalidInput("subtree needs run: the run whose descendants to follow")
    transport = "ndjson" if ndjson else "sse"
    # A followed run ends its stream (its encoding says so), not the session's idleness: a cancelled
    # run's children may end after it, when the session's own run has ended already.
    return await streams.open(session_id, after, encoding, transport, snapshot=snapshot, until_idle=run is None)
