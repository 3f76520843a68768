"""The Vercel AI SDK's chat endpoints, for `useChat` with `DefaultChatTransport` pointed at the gateway.

    POST /v1/ai-sdk/chat                  send: queue a run with the last user message, answer its stream
    GET  /v1/ai-sdk/chat/{chat_id}/stream  the transport's reconnect (`resume: true`): the active run
                                          from its start, or 204
    POST /v1/ai-sdk/chat/{chat_id}/stop    cancel the active run (the SDK's `stop()` only hangs up)
    GET  /v1/ai-sdk/chat/{chat_id}/messages  the chat's messages, for `useChat({messages})` after a reload

The chat's history stays in tokentail: a send queues the last user message of the body, after the
turns of its message list (a regenerated or edited turn branches: gateway/commands/branching.py).
"""

import time
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from tokentail.gateway.deps import (
    ChattingChatDep,
    ChatTurnsDep,
    ReadableChatDep,
    RunsDep,
    StoreDep,
    StreamsDep,
)
from tokentail.gateway.protocols.ai_sdk import socket_routes
from tokentail.gateway.protocols.ai_sdk.render import HEADERS, UiMessageStream, steered_message
from tokentail.gateway.protocols.ai_sdk.requests import ChatRequest, ui_messages_chat
from tokentail.gateway.schemas import ERROR_RESPONSES, STREAM_RESPONSES, CancelAccepted, CancelRun
from tokentail.shared.vocabulary.errors import SessionExpired, SessionNotFound
from tokentail.shared.vocabulary.records import transcript

router = APIRouter(prefix="/v1/ai-sdk/chat", tags=["ai-sdk"])
# The package's one router (gateway/protocols/__init__.py includes it): the WebSocket's endpoint
# (socket_routes.py) first, then HTTP's below.
router.include_router(socket_routes.router)


@router.post("", responses=STREAM_RESPONSES, response_class=StreamingResponse)
async def send(body: ChatRequest, turns: ChatTurnsDep, streams: StreamsDep) -> Response:
    """Queue a run with the last user message and answer with its UI message stream. The chat's session
    is made on its first message; a message sent while a run is active waits in line behind it. Sent
    with an answer to the run's approval request (`addToolApprovalResponse`): the run goes on, and the
    response continues its message."""
    session_id = await turns.session(body.id)
    async with streams.reserve() as reserved:  # the stream's slot first: a 429 queued nothing
        if approvals := body.approvals():  # sent by addToolApprovalResponse: the run goes on
            waiting, received = await turns.answer(await turns.store.get_session(session_id), approvals)
            # Read from the run's start, quiet up to the answer: a drop after it knows what the message holds.
            answered = frozenset(waiting.answers)
            events = UiMessageStream(waiting.run_id, answered, opens=waiting.run_id, quiet_until=received)
            assert waiting.queued_seq is not None
            after = waiting.queued_seq - 1
            return await streams.open(session_id, after, events, "ai-sdk", HEADERS, resuming=False, reserved=reserved)
        session_id, run, steered = await turns.send(body.id, session_id, ui_messages_chat(body))
        assert run.queued_seq is not None
        events = UiMessageStream(run.run_id, opens=steered_message(run) if steered else None)
        after = run.queued_seq - 1
        return await streams.open(session_id, after, events, "ai-sdk", HEADERS, resuming=False, reserved=reserved)


@router.get(
    "/{chat_id}/stream",
    responses={**STREAM_RESPONSES, 204: {"description": "no active answer"}},
    response_class=StreamingResponse,
)
async def reconnect(session_id: ReadableChatDep, store: StoreDep, streams: StreamsDep) -> Response:
    """The active answer, replayed from its start with the same message id (what the SDK's
    `resumeStreamIsReplay` expects), or one that ended moments ago; else 204."""
    try:
        session = await store.get_session(session_id)
    except SessionExpired:
        raise
    except SessionNotFound:
        return Response(status_code=204)  # a chat with no message yet
    run = streams.run_to_replay(session, time.time())
    if run is None or run.queued_seq is None:
        return Response(status_code=204)
    events = UiMessageStream(run.run_id, frozenset(run.answers))
    return await streams.open(session_id, run.queued_seq - 1, events, "ai-sdk", HEADERS)


@router.post("/{chat_id}/stop", status_code=202, responses=ERROR_RESPONSES)
async def stop(session_id: ChattingChatDep, runs: RunsDep, body: CancelRun | None = None) -> CancelAccepted:
    """Cancel the chat's active run; idempotent (as `POST /v1/sessions/{sid}/cancel`). With
    `{"run_id"}` (the run the client shows), only that run, if it is still the active one."""
    outcome, run_id = await runs.cancel_run(session_id, body.run_id if body is not None else None)
    return CancelAccepted.of(outcome, run_id)


@router.get("/{chat_id}/messages", responses=ERROR_RESPONSES)
async def messages(session_id: ReadableChatDep, store: StoreDep) -> list[dict[str, Any]]:
    """The chat as UI messages (text parts), to start `useChat` with after a reload: the active run's
    answer is the text so far, under the id its resumed stream replaces."""
    try:
        session = await store.get_session(session_id)
    except SessionExpired:
        raise
    except SessionNotFound:
        return []
    active = session.active_run
    partial = await store.partial_text(session_id, active) if active is not None else ""
    return [
        {
            "id": turn.run_id if turn.role == "assistant" else f"{turn.run_id}-input",
            "role": turn.role,
            "parts": [{"type": "text", "text": turn.content}] if turn.content else [],
        }
        for turn in transcript(session.runs, partial)
    ]
