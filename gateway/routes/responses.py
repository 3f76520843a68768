"""OpenAI's Responses API, for `OpenAI(base_url="<gateway>/v1", api_key=<tenant key>)` unchanged.

    POST   /v1/responses                    a run (or the answer to a run's question): its Response,
                                            when it ends (`background`: at once), or its stream
    GET    /v1/responses/{id}               the Response as it is now; `?stream=true&starting_after=N`
                                            its events after sequence number N (any gateway)
    POST   /v1/responses/{id}/cancel        cancel its run; the Response, once the run has ended
    GET    /v1/responses/{id}/input_items   what it was asked
    DELETE /v1/responses/{id}               delete its conversation (the session, every response of it)

A streamed response that is not `background` ends with its request, as OpenAI's does: a client
that goes away before its end cancels the run. docs/openai-responses.md has what maps to what.
"""

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from tokentail.gateway.commands.responses import ResponseRef, find_response
from tokentail.gateway.deps import (
    AuthDep,
    CallerDep,
    HubDep,
    ResponseRequestsDep,
    RunsDep,
    SettingsDep,
    ShutdownDep,
    StoreDep,
    StreamsDep,
)
from tokentail.gateway.encodings.responses import ResponseEvents
from tokentail.gateway.encodings.translation import compact
from tokentail.gateway.reading.feed import Batch, EventFeed, start_position
from tokentail.gateway.reading.hub import Chunk, StreamHub
from tokentail.gateway.schemas import ERROR_RESPONSES, STREAM_RESPONSES, CreateResponse
from tokentail.shared.store import SessionStore

router = APIRouter(prefix="/v1/responses", tags=["responses"])

CANCEL_WAIT_SECONDS = 10.0  # how long a cancel waits for the run's end before answering as it is


def events_of(ref: ResponseRef, starting_after: int = -1, **known: Any) -> ResponseEvents:
    return ResponseEvents(ref.run.run_id, ref.segment, ref.header(**known), starting_after)


async def replay(store: SessionStore, ref: ResponseRef, events: ResponseEvents) -> None:
    """Run the response's stored events so far through `events` (a Response object as of now)."""
    after = ref.after
    while not events.finished and (stored := await store.read(ref.session.session_id, after, 1000)):
        events.translate(Batch([Chunk(stored)]))
        after = stored[-1].seq


async def wait_for_end(
    hub: StreamHub, ref: ResponseRef, events: ResponseEvents, batch: int, seconds: float | None
) -> None:
    """Follow the response's events until it ends (or `seconds` pass)."""
    session_id = ref.session.session_id
    start = await start_position(hub.store, session_id, ref.after)
    feed = EventFeed(hub, session_id, start, batch, until_idle=True, transport="responses")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds), contextlib.aclosing(feed.__aiter__()) as batches:
            async for got in batches:
                events.translate(got)
                if events.finished:
                    break


@router.post("", responses=STREAM_RESPONSES)
async def create_response(
    body: CreateResponse,
    requests: ResponseRequestsDep,
    streams: StreamsDep,
    store: StoreDep,
    hub: HubDep,
    runs: RunsDep,
    settings: SettingsDep,
    shutdown: ShutdownDep,
) -> Response:
    """Queue a run (or answer the question of `previous_response_id`'s run) and answer with its
    Response: when it ends, at once with `background`, or as its stream with `stream`."""
    ref = await requests.create(body)
    events = events_of(ref, background=body.background)
    if body.stream:
        session_id = ref.session.session_id

        async def cancel_unless_ended() -> None:
            # The client left before the response's end: so does the run. Not when this gateway is
            # stopping (a deploy): the stream ended for it, and the client may read on elsewhere.
            if not events.finished and not shutdown.started:
                await runs.cancel_run(session_id)

        on_close = None if body.background else cancel_unless_ended
        return await streams.open(session_id, ref.after, events, "responses", resuming=False, on_close=on_close)
    if body.background:
        await replay(store, ref, events)
    else:
        async with streams.slot():
            await wait_for_end(hub, ref, events, settings.sse_batch, seconds=None)
    return JSONResponse(events.response())


@router.get("/{response_id}", responses=STREAM_RESPONSES)
async def retrieve_response(
    response_id: str,
    caller: CallerDep,
    auth: AuthDep,
    store: StoreDep,
    streams: StreamsDep,
    stream: bool = False,
    starting_after: int = -1,
) -> Response:
    """The Response as its events so far make it (poll it while `queued` or `in_progress`); with
    `stream=true`, its events after sequence number `starting_after`, then live to its end."""
    ref = await find_response(auth, caller, store, response_id)
    if stream:
        events = events_of(ref, starting_after)
        return await streams.open(ref.session.session_id, ref.after, events, "responses")
    events = events_of(ref)
    await replay(store, ref, events)
    return JSONResponse(events.response())


@router.post("/{response_id}/cancel", responses=ERROR_RESPONSES)
async def cancel_response(
    response_id: str,
    caller: CallerDep,
    auth: AuthDep,
    store: StoreDep,
    runs: RunsDep,
    hub: HubDep,
    settings: SettingsDep,
    streams: StreamsDep,
) -> dict[str, Any]:
    """Cancel the response's run, from any gateway (idempotent); the Response once the run has
    ended (or after 10 s, as it is then)."""
    caller.require_chat()
    ref = await find_response(auth, caller, store, response_id)
    # Only the run's current segment: an earlier response of it ended at a question, and cancelling
    # it must not stop the run that went on after the answer.
    if ref.session.active_run_id == ref.run.run_id and ref.segment == len(ref.run.answers):
        await runs.cancel_run(ref.session.session_id)
    events = events_of(ref)
    async with streams.slot():
        await wait_for_end(hub, ref, events, settings.sse_batch, seconds=CANCEL_WAIT_SECONDS)
    return events.response()


@router.get("/{response_id}/input_items", responses=ERROR_RESPONSES)
async def list_input_items(response_id: str, caller: CallerDep, auth: AuthDep, store: StoreDep) -> dict[str, Any]:
    """What the response was asked: the user's message, or the answer to the run's question."""
    ref = await find_response(auth, caller, store, response_id)
    items = [_input_item(ref)]
    return {"object": "list", "data": items, "first_id": items[0]["id"], "last_id": items[-1]["id"], "has_more": False}


def _input_item(ref: ResponseRef) -> dict[str, Any]:
    run = ref.run
    if ref.segment == 0:
        content = [{"type": "input_text", "text": run.input}]
        return {"type": "message", "id": f"msg_{run.run_id}", "role": "user", "status": "completed", "content": content}
    question = run.asked[ref.segment - 1]
    answer = run.answers[question.input_id]
    item_id = f"in_{question.input_id}"
    if question.kind == "approval" and question.call_id is not None and isinstance(answer, dict):
        reason = {"reason": answer["reason"]} if "reason" in answer else {}
        approve = bool(answer.get("approved"))
        return {
            "type": "mcp_approval_response",
            "id": item_id,
            "approval_request_id": question.input_id,
            "approve": approve,
            **reason,
        }
    output = answer if isinstance(answer, str) else compact(answer)
    return {
        "type": "function_call_output",
        "id": item_id,
        "call_id": question.input_id,
        "output": output,
        "status": "completed",
    }


@router.delete("/{response_id}", responses=ERROR_RESPONSES)
async def delete_response(
    response_id: str, caller: CallerDep, auth: AuthDep, store: StoreDep, runs: RunsDep
) -> dict[str, Any]:
    """Delete the response's conversation: its session, with every response of it."""
    caller.require_api_key()
    ref = await find_response(auth, caller, store, response_id)
    await runs.delete_session(ref.session)
    return {"id": ref.id, "object": "response.deleted", "deleted": True}
