"""OpenAI's Responses API, for `OpenAI(base_url="<gateway>/v1", api_key=<tenant key>)` unchanged.

    POST   /v1/responses                    a run (or the answer to a run's question): its Response,
                                            when it ends (`background`: at once), or its stream
    GET    /v1/responses/{id}               the Response as it is now; `?stream=true&starting_after=N`
                                            its events after sequence number N (any gateway)
    POST   /v1/responses/{id}/cancel        cancel its run; the Response, once the run has ended
    GET    /v1/responses/{id}/input_items   what it was asked
    DELETE /v1/responses/{id}               delete its conversation (the session, every response of it)
    GET    /v1/responses  (WebSocket)       the WebSocket mode: `response.create` messages, each answered
                                            with its response's events (gateway/protocols/responses/socket.py)

A response that is not `background` ends with its request (or socket), as OpenAI's does: a client
that goes away before its end (streamed, or waiting for it) cancels it. A stream, or a request that
waits, holds one of the tenant's stream slots, taken before anything else.
docs/openai-responses.md has what maps to what.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from tokentail.gateway import socket_tasks
from tokentail.gateway.access.auth import bearer_credential
from tokentail.gateway.commands import deletion
from tokentail.gateway.deps import (
    AuthDep,
    CallerDep,
    HubDep,
    RunsDep,
    SettingsDep,
    ShutdownDep,
    StoreDep,
    StreamsDep,
    authenticated_caller,
    commands_for,
    run_commands,
    streams_for,
)
from tokentail.gateway.errors import describe, error_headers, error_response
from tokentail.gateway.protocols.responses.finished import FinishedStreams
from tokentail.gateway.protocols.responses.follow import cancel_unless_ended, events_of, replay, wait_for_end
from tokentail.gateway.protocols.responses.render import MEDIA_TYPE, ResponseEvents
from tokentail.gateway.protocols.responses.requests import CreateResponse, ResponseRef, ResponseRequests, find_response
from tokentail.gateway.protocols.responses.socket import ResponsesSocket
from tokentail.gateway.reading.renderer import compact
from tokentail.gateway.reading.response import ClientLeft, unless_left
from tokentail.gateway.reading.streams import SSE_HEADERS
from tokentail.gateway.schemas import ERROR_RESPONSES, STREAM_RESPONSES
from tokentail.shared.vocabulary.errors import TokentailError
from tokentail.shared.vocabulary.records import Question


@asynccontextmanager
async def keeping(app: FastAPI) -> AsyncIterator[None]:
    """The responses that ended, as this gateway sent them (finished.py), kept while it serves."""
    app.state.finished_streams = FinishedStreams()
    yield


async def finished_streams(connection: HTTPConnection) -> FinishedStreams:
    kept: FinishedStreams = connection.app.state.finished_streams
    return kept


router = APIRouter(prefix="/v1/responses", tags=["responses"], lifespan=keeping)

# A Responses API request: a stream token of the session, or an API key (a new conversation needs an
# API key: checked there).
ResponseRequestsDep = Annotated[ResponseRequests, Depends(commands_for(ResponseRequests, authenticated_caller))]
FinishedStreamsDep = Annotated[FinishedStreams, Depends(finished_streams)]
CANCEL_WAIT_SECONDS = 10.0  # how long a cancel waits for the run's end before answering as it is


async def keep_if_ended(finished: FinishedStreams, key: str, events: ResponseEvents) -> None:
    """A response's stream that saw its end: its frames, for the next reader to resume by a slice."""
    if events.finished and events.kept is not None:
        finished.keep(key, events.starting_after + 1, events.kept)


@router.post("", responses=STREAM_RESPONSES)
async def create_response(
    body: CreateResponse,
    request: Request,
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
    if body.background and not body.stream:
        ref = await requests.create(body)
        events = events_of(ref, background=True)
        await replay(store, ref, events)
        return JSONResponse(events.response())
    # A stream, or a request that waits for its run's end, holds one of the tenant's stream slots:
    # taken before the run is queued, so that a 429 means nothing started (the SDKs retry a 429).
    async with streams.reserve() as reserved:
        ref = await requests.create(body)
        events = events_of(ref, background=body.background)
        if body.stream:
            on_close = None if body.background else partial(cancel_unless_ended, runs, shutdown, ref, events)
            return await streams.open(
                ref.session.session_id,
                ref.after,
                events,
                "responses",
                resuming=False,
                on_close=on_close,
                reserved=reserved,
            )
        try:
            await unless_left(request.receive, wait_for_end(hub, ref, events, settings.sse_batch, seconds=None))
        except ClientLeft:
            await cancel_unless_ended(runs, shutdown, ref, events)
    return JSONResponse(events.response())


@router.get("/{response_id}", responses=STREAM_RESPONSES)
async def retrieve_response(
    response_id: str,
    caller: CallerDep,
    auth: AuthDep,
    store: StoreDep,
    streams: StreamsDep,
    finished: FinishedStreamsDep,
    stream: bool = False,
    starting_after: int = -1,
) -> Response:
    """The Response as its events so far make it (poll it while `queued` or `in_progress`); with
    `stream=true`, its events after sequence number `starting_after`, then live to its end."""
    ref = await find_response(auth, caller, store, response_id)
    if stream:
        if (kept := finished.after(ref.id, starting_after)) is not None:  # it ended: this gateway's copy
            return Response(kept, media_type=MEDIA_TYPE, headers=SSE_HEADERS)
        events = events_of(ref, starting_after, keep=True)
        on_close = partial(keep_if_ended, finished, ref.id, events)
        return await streams.open(ref.session.session_id, ref.after, events, "responses", on_close=on_close)
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
    events = events_of(ref)
    async with streams.reserve():  # taken first: a 429 cancelled nothing
        # Only while the run is in this response's segment (waiting at its question included): an
        # earlier response of the run ended at a question, and cancelling it must not stop the run
        # that went on after the answer. Checked in the cancel's own step (cancel_run.lua).
        await runs.cancel_run(ref.session.session_id, ref.run.run_id, segment=ref.segment)
        await wait_for_end(hub, ref, events, settings.sse_batch, seconds=CANCEL_WAIT_SECONDS)
    return events.response()


@router.get("/{response_id}/input_items", responses=ERROR_RESPONSES)
async def list_input_items(response_id: str, caller: CallerDep, auth: AuthDep, store: StoreDep) -> dict[str, Any]:
    """What the response was asked: the user's message, the answers to the run's questions, or the steer
    the run took in."""
    ref = await find_response(auth, caller, store, response_id)
    events = events_of(ref)
    await replay(store, ref, events)  # which answers or steer opened it, as its events say
    items = _input_items(ref, events.opened_by)
    return {"object": "list", "data": items, "first_id": items[0]["id"], "last_id": items[-1]["id"], "has_more": False}


def _input_items(ref: ResponseRef, opened_by: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """The items the response's segment was opened by (ResponseEvents.opened_by)."""
    run = ref.run
    if opened_by is None or opened_by[0] == "steer":
        text, item_id = run.input, f"msg_{run.run_id}"
        if opened_by is not None:
            text = next(steer.text for steer in run.steers if steer.steer_id == opened_by[1])
            item_id = f"msg_{opened_by[1]}"
        content = [{"type": "input_text", "text": text}]
        return [{"type": "message", "id": item_id, "role": "user", "status": "completed", "content": content}]
    return [
        _answer_item(question, run.answers[question.input_id])
        for question in run.asked
        if question.input_id in opened_by[1:]
    ]


def _answer_item(question: Question, answer: Any) -> dict[str, Any]:
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
    """Delete the response's conversation: its session, with every response of it (the archive's copy
    too, or once the archive is back: OpenAI's answer has no room to say which)."""
    caller.require_api_key()
    ref = await find_response(auth, caller, store, response_id)
    await deletion.delete_session(runs, store, ref.session)
    return {"id": ref.id, "object": "response.deleted", "deleted": True}


@router.websocket("")
async def response_socket(
    websocket: WebSocket,
    auth: AuthDep,
    runs: RunsDep,
    shutdown: ShutdownDep,
    token: Annotated[str | None, Query()] = None,
) -> None:
    """The WebSocket mode (`client.responses.connect()`). Credentials as for the HTTP API: a refused
    upgrade is answered as that request would be (401, OpenAI's error body), so the SDK raises at
    connect. The socket holds nothing of the tenant's until a response is in flight."""
    try:
        caller = auth.authenticate(bearer_credential(websocket.headers.get("authorization")), token)
    except TokentailError as exc:
        status, type_ = describe(exc)
        await websocket.send_denial_response(error_response(status, type_, str(exc), error_headers(exc)))
        return
    await websocket.accept()
    requests = run_commands(ResponseRequests, websocket, caller)
    responses = ResponsesSocket(websocket, requests, streams_for(websocket, caller), runs, shutdown)
    try:
        while (message := await websocket.receive())["type"] != "websocket.disconnect":
            await responses.take(message.get("text"))
    except Exception as exc:
        if not socket_tasks.closed_by_client(exc):
            raise
    finally:
        await responses.close()
