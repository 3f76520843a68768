"""The Vercel AI SDK's `WebSocketChatTransport` (v7) conversation: many chat requests over one socket
(protocols/ai_sdk/socket_routes.py serves it).

    client → server   {"type": "send", "requestId", "id", "trigger", "messageId"?, "messages", ...}
                      {"type": "resume", "requestId", "id", "lastSequence"?, ...}
                      {"type": "abort", "requestId"}
    server → client   {"type": "start", "requestId"}
                      {"type": "chunk", "requestId", "sequence": 0, 1, ..., "chunk": <UI message stream part>}
                      {"type": "end", "requestId"} | {"type": "error", "requestId", "errorText"}
                      {"type": "no-active", "requestId"}   (a resume with no answer to replay)

A request's chunks are the parts of its run's UI message stream (ai_sdk.py, the same renderer as over
HTTP), numbered from 0 at the run's start. A resume replays the run from there, so a part has the
same number in every replay, and a `lastSequence` skips what the client holds.
"""

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from fastapi import WebSocket
from pydantic import ValidationError

from tokentail.gateway import socket_tasks
from tokentail.gateway.access.limits import RequestsInFlight
from tokentail.gateway.commands.turns import ChatTurns
from tokentail.gateway.live import first_delta
from tokentail.gateway.protocols.ai_sdk.render import UiMessageStream, steered_message
from tokentail.gateway.protocols.ai_sdk.requests import ChatRequest, ui_messages_chat
from tokentail.gateway.reading.feed import EventFeed, start_position
from tokentail.gateway.reading.streams import Streams
from tokentail.shared.connections.outage import is_outage
from tokentail.shared.vocabulary.errors import InvalidInput, SessionExpired, SessionNotFound, TokentailError
from tokentail.shared.vocabulary.records import RunRecord

logger = logging.getLogger(__name__)


class ChatSocket:
    def __init__(
        self, websocket: WebSocket, streams: Streams, turns: ChatTurns, token_requests: RequestsInFlight
    ) -> None:
        self.websocket = websocket
        self.streams = streams
        self.turns = turns
        self.requests: dict[str, asyncio.Task[None]] = {}
        self._token_requests = token_requests
        self._lock = asyncio.Lock()  # the requests' tasks all send

    async def send(self, frame: dict[str, Any]) -> None:
        async with self._lock:
            await self.websocket.send_text(json.dumps(frame, separators=(",", ":"), ensure_ascii=False))

    async def take(self, frame: dict[str, Any]) -> None:
        """Start serving a request, or stop one (abort). Awaited by the receiving loop, so a client
        that floods the socket waits for its refusals to be sent."""
        request_id = frame.get("requestId")
        if not isinstance(request_id, str):
            return  # not a frame of this protocol: it cannot even be answered
        if (replaced := self.requests.pop(request_id, None)) is not None:
            # An abort, or the id reused: the client reads only the newest request of an id.
            await socket_tasks.stop([replaced])
        if frame.get("type") == "abort":
            return
        if len(self.requests) >= self._token_requests.limit or not self._token_requests.take(self.streams.caller):
            limit = self._token_requests.limit
            await self.send({"type": "error", "requestId": request_id, "errorText": f"too_many_requests: {limit} "
                             "requests are in flight on this socket (or this token) already: abort one"})  # fmt: skip
            return
        first_delta.RECEIVED_AT.set(time.time())  # the request's task starts with it: a run it queues is stamped
        task = asyncio.create_task(self.serve(request_id, frame))
        self.requests[request_id] = task
        task.add_done_callback(lambda done: self._finished(request_id, done))

    def _finished(self, request_id: str, task: asyncio.Task[None]) -> None:
        if self.requests.get(request_id) is task:
            del self.requests[request_id]
        self._token_requests.give_back(self.streams.caller)
        if not task.cancelled() and (exc := task.exception()) is not None and not socket_tasks.closed_by_client(exc):
            logger.error("an AI SDK chat request failed", exc_info=exc)

    async def serve(self, request_id: str, frame: dict[str, Any]) -> None:
        try:
            # Each request is a stream of its own: it holds one of its tenant's (and token's) stream
            # slots besides the socket's, taken before it queues a run, so that a refusal started nothing.
            async with self.streams.reserve():
                await self._serve(request_id, frame)
        except (TokentailError, ValidationError, ValueError) as exc:
            await self.send({"type": "error", "requestId": request_id, "errorText": str(exc)})
        except Exception as exc:
            if not is_outage(exc):
                raise
            await self.send({"type": "error", "requestId": request_id, "errorText": "Redis is unavailable: retry"})

    async def _serve(self, request_id: str, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind not in ("send", "resume") or not isinstance(frame.get("id"), str):
            raise InvalidInput("a request is a send, resume or abort frame with a chat `id`")
        session_id = await self.turns.session(frame["id"])
        skip: int = -1
        translation: UiMessageStream | None = None
        run: RunRecord | None
        if kind == "send":
            request = ChatRequest.model_validate(frame)
            if approvals := request.approvals():  # addToolApprovalResponse: the run goes on
                run, received = await self.turns.answer(await self.turns.store.get_session(session_id), approvals)
                # From the run's start, quiet up to the answer (see protocols/ai_sdk/routes.py).
                answered = frozenset(run.answers)
                translation = UiMessageStream(run.run_id, answered, opens=run.run_id, quiet_until=received)
            else:
                session_id, run, steered = await self.turns.send(frame["id"], session_id, ui_messages_chat(request))
                if steered:
                    translation = UiMessageStream(run.run_id, opens=steered_message(run))
        else:
            skip = frame.get("lastSequence", -1)
            if not isinstance(skip, int) or skip < -1:
                raise InvalidInput("lastSequence must be a chunk's sequence number")
            try:
                run = self.streams.run_to_replay(await self.streams.store.get_session(session_id), time.time())
            except SessionExpired:
                raise
            except SessionNotFound:
                run = None
        if run is None or run.queued_seq is None:
            await self.send({"type": "no-active", "requestId": request_id})
            return
        await self.send({"type": "start", "requestId": request_id})
        after = run.queued_seq - 1
        translation = translation or UiMessageStream(run.run_id, frozenset(run.answers))
        if await self._chunks(request_id, session_id, translation, after, skip):
            await self.send({"type": "end", "requestId": request_id})
        else:  # the session went away, or this gateway is stopping: not an end the client should believe
            await self.send({"type": "error", "requestId": request_id, "errorText": "the stream was cut: resume it"})

    async def _chunks(
        self, request_id: str, session_id: str, translation: UiMessageStream, after: int, skip: int
    ) -> bool:
        """Send the run's parts from after `after`, those numbered after `skip`; whether the
        response's end was sent (the run's, or a question it waits for)."""
        start = await start_position(self.streams.store, session_id, after)
        feed = EventFeed(self.streams.hub, session_id, start, self.streams.settings.sse_batch, True, "ai-sdk-ws")
        sequence = -1
        parts = translation.opening(start.gap)
        async with contextlib.aclosing(feed.__aiter__()) as batches:
            async for batch in batches:
                parts += [part for translated, _ in translation.rendered(batch) for part in translated]
                for part in parts:
                    sequence += 1
                    if sequence > skip:
                        await self.send({"type": "chunk", "requestId": request_id, "sequence": sequence, "chunk": part})
                parts = []
                if translation.finished:
                    return True
        return False

    async def close(self) -> None:
        await socket_tasks.stop(list(self.requests.values()))
