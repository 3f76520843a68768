"""A session's events as SSE (or NDJSON, if asked for), resumable from `Last-Event-ID` or `?last_event_id=`."""

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from tokentail.gateway.deps import ReadableSessionDep, streams_for
from tokentail.gateway.encodings.ndjson import Ndjson
from tokentail.gateway.encodings.sse import NativeSse
from tokentail.gateway.reading.feed import parse_last_event_id
from tokentail.gateway.schemas import ERROR_RESPONSES

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
) -> Response:
    """Server-Sent Events; with `Accept: application/x-ndjson`, one JSON event per line instead."""
    # One dependency (the caller and the session): the hot route calls this as FastAPI does.
    session_id, streams = access.session_id, streams_for(request, access.caller)
    after = parse_last_event_id(last_event_id if last_event_id is not None else last_event_id_header)
    snapshot = catch_up == "snapshot"
    if accept is not None and "application/x-ndjson" in accept:
        return await streams.open(session_id, after, Ndjson(), transport="ndjson", snapshot=snapshot)
    return await streams.open(
        session_id, after, NativeSse(request.app.state.settings.sse_retry_ms), transport="sse", snapshot=snapshot
    )
