"""SSE: a session's events, resumable from `Last-Event-ID` or `?last_event_id=`."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from gateway.deps import ERROR_RESPONSES, SessionIdDep, SettingsDep, ShutdownDep, StoreDep, TailDep
from gateway.sse import EventStream
from shared.errors import InvalidLastEventId
from shared.events import Gap

router = APIRouter(prefix="/v1/sessions", tags=["events"])

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def parse_last_event_id(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise InvalidLastEventId(value)
    return int(value)


@router.get(
    "/{session_id}/events",
    name="stream_events",
    response_class=StreamingResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}, 204: {"description": "nothing left"}},
)
async def stream_events(
    session_id: SessionIdDep,
    store: StoreDep,
    tail: TailDep,
    shutdown: ShutdownDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Query(description="resume after this id; wins over the header")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    after = parse_last_event_id(last_event_id if last_event_id is not None else last_event_id_header)
    last_seq, active = await store.stream_position(session_id)
    gap = None
    if after > last_seq:
        # Ahead of the stream: not an id this session gave out. Say so, and replay what there is.
        first = await store.first_available(session_id)
        gap = Gap(reason="unknown_id", first_available=first or last_seq + 1)
    elif after < last_seq:
        first = await store.first_available(session_id)
        if first is None:
            gap = Gap(reason="expired", first_available=last_seq + 1)
        elif first > after + 1:
            gap = Gap(reason="trimmed", first_available=first)
    if gap is not None:
        after = gap.first_available - 1
    if not active and after >= last_seq:
        # Nothing to send and nothing coming. (A gap frame alone would not move a browser's
        # Last-Event-ID, so it would reconnect for ever.) 204 stops an EventSource.
        return Response(status_code=204)
    stream = EventStream(
        store, tail, shutdown, session_id, after, gap, retry_ms=settings.sse_retry_ms, batch=settings.sse_batch
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
