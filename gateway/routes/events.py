"""SSE: a session's events, resumable from `Last-Event-ID` or `?last_event_id=`."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from gateway.deps import (
    ERROR_RESPONSES,
    CallerDep,
    HubDep,
    ReadableSessionDep,
    SettingsDep,
    StoreDep,
    StreamSlotsDep,
)
from gateway.feed import EventFeed, parse_last_event_id, start_position
from gateway.sse import EventStreamResponse

router = APIRouter(prefix="/v1/sessions", tags=["events"])

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


@router.get(
    "/{session_id}/events",
    name="stream_events",
    response_class=StreamingResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}, 204: {"description": "nothing left"}},
)
async def stream_events(
    session_id: ReadableSessionDep,
    caller: CallerDep,
    store: StoreDep,
    hub: HubDep,
    settings: SettingsDep,
    slots: StreamSlotsDep,
    last_event_id: Annotated[str | None, Query(description="resume after this id; wins over the header")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    after = parse_last_event_id(last_event_id if last_event_id is not None else last_event_id_header)
    start = await start_position(store, session_id, after)
    if start.idle:
        # Nothing to send and nothing coming. (A gap frame alone would not move a browser's
        # Last-Event-ID, so it would reconnect for ever.) 204 stops an EventSource.
        return Response(status_code=204)
    slot = await slots.take(caller.tenant)
    feed = EventFeed(hub, session_id, start, settings.sse_batch, until_idle=True, transport="sse")
    return EventStreamResponse(
        feed, start.gap, settings.sse_retry_ms, SSE_HEADERS, on_close=partial(slots.release, slot)
    )
