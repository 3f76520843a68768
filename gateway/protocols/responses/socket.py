"""OpenAI's Responses API in WebSocket mode (`client.responses.connect()` in the SDKs): many responses
over one socket, `GET /v1/responses` upgraded (protocols/responses/routes.py serves it).

    client → server   {"type": "response.create", "stream_id"?: "<lane>", ...the body of POST /v1/responses}
                      {"type": "response.steer", "previous_response_id", "input"}: steering.py
    server → client   the response's stream events, as over HTTP, one text message each, with the
                      create's "stream_id" added when it gave one
                      {"type": "error", "status": 4xx, "error": {"type", "code", "message", "param"},
                       "stream_id"?}   a create refused (nothing started), or a message that is none

A create is `POST /v1/responses` (gateway/protocols/responses/requests.py) and its events are the HTTP
stream's (follow.py): the same ids and sequence numbers, so a response begun here is
resumed by `GET /v1/responses/{id}?stream=true&starting_after=N` on any gateway.

Lanes, as OpenAI's: a create's `stream_id` names its lane (none: the default lane). A lane serves
its creates in order, each once the response before it ended; lanes go at once, up to
`MAX_ACTIVE` responses in flight on a socket, further creates waiting in their lanes (up to
`MAX_WAITING`: past that, an error). Each response in flight holds one of the tenant's stream slots
from before its run is queued to its end, as an HTTP stream does (a 429 means nothing started).

A response that ends where its run took in a steer (`incomplete`, reason `steered`) is followed in
its lane by its successor, the run's next segment, as OpenAI's WebSocket mode sends it.

A response that is not `background` ends with its socket, as an HTTP stream's ends with its
request: a socket that closes mid-response (the client left, the network dropped) cancels it
(follow.cancel_unless_ended), except when the gateway is stopping (closed 1012: the client
reconnects and reads on). `background: true`, which OpenAI's WebSocket mode does not take, is
tokentail's way to keep a response through a dropped socket.
"""

import asyncio
import json
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket
from pydantic import ValidationError

from tokentail.gateway import socket_tasks
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.gateway.errors import describe, describe_outage
from tokentail.gateway.live import first_delta
from tokentail.gateway.protocols.responses.follow import cancel_unless_ended, events_of, follow
from tokentail.gateway.protocols.responses.output import Part
from tokentail.gateway.protocols.responses.render import ResponseEvents
from tokentail.gateway.protocols.responses.requests import CreateResponse, ResponseRef, ResponseRequests
from tokentail.gateway.protocols.responses.steering import SteerFailed, accepted, failed, pending, steer_response
from tokentail.gateway.reading.renderer import compact
from tokentail.gateway.reading.shutdown import StreamShutdown
from tokentail.gateway.reading.streams import Streams
from tokentail.shared.vocabulary.errors import SessionNotFound, TokentailError

MAX_ACTIVE = 16  # responses in flight on one socket (OpenAI's own figure); more wait in their lanes
MAX_WAITING = 16  # creates received and not started yet, on one socket: past this, refused
MAX_STREAM_IDS = 32  # named lanes one socket may use (OpenAI's own figure; the default lane aside)
STREAM_ID = re.compile(r"[A-Za-z0-9_.-]{1,256}")
TRANSPORT = "responses-ws"  # the metrics' `transport` label

logger = logging.getLogger(__name__)


class Refused(Exception):
    """A client message answered with an error event (the socket stays open)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Lane:
    stream_id: str | None
    waiting: deque[tuple[float, CreateResponse]] = field(default_factory=deque)  # with when each came
    task: asyncio.Task[None] | None = None


@dataclass
class InFlight:
    ref: ResponseRef
    events: ResponseEvents
    background: bool
    stream_id: str | None = None


class ResponsesSocket:
    """One socket's responses: its lanes, what is in flight, and what is left when it closes."""

    def __init__(
        self,
        websocket: WebSocket,
        requests: ResponseRequests,
        streams: Streams,
        runs: SessionWrites,
        shutdown: StreamShutdown,
    ) -> None:
        self.websocket = websocket
        self.requests = requests
        self.streams = streams
        self.runs = runs
        self.shutdown = shutdown
        self.lanes: dict[str | None, Lane] = {}
        self.waiting = 0
        self.active = asyncio.Semaphore(MAX_ACTIVE)
        self.in_flight: dict[str, InFlight] = {}  # by response id: what a closing socket may cancel
        self.creating: list[tuple[asyncio.Future[ResponseRef], bool]] = []  # creates the close cut short
        self._lock = asyncio.Lock()  # every lane sends

    async def take(self, text: str | None) -> None:
        """A client message: a create goes in its lane; anything else is answered with an error.
        Awaited by the receiving loop, so a client that floods the socket waits for its refusals."""
        stream_id = None
        try:
            message = self._parse(text)
            if message.get("type") == "response.steer":
                return await self._steer(message)
            stream_id = self._stream_id(message)
            self._enqueue(stream_id, self._create(message))
        except Refused as exc:
            await self.error(exc.status, exc.code, str(exc), stream_id)
        except ValidationError as exc:
            await self.error(422, "validation_error", _problems(exc), stream_id)

    def _parse(self, text: str | None) -> dict[str, Any]:
        limit = self.requests.settings.max_request_bytes
        if text is None:
            raise Refused(400, "invalid_request", "messages are text frames holding a JSON object")
        if len(text) > limit or len(text.encode()) > limit:
            raise Refused(413, "input_too_large", f"a message may hold at most {limit} bytes")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            raise Refused(400, "invalid_json", "a message is one JSON object") from None
        if not isinstance(message, dict):
            raise Refused(400, "invalid_request", "a message is one JSON object")
        return message

    def _stream_id(self, message: dict[str, Any]) -> str | None:
        """The lane a create names, checked (its errors then go to the default lane)."""
        stream_id = message.get("stream_id")
        if stream_id is None:
            return None
        if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
            raise Refused(400, "invalid_stream_id", "stream_id: 1-256 ASCII letters, digits, '_', '-' or '.'")
        named = sum(1 for lane in self.lanes if lane is not None)
        if stream_id not in self.lanes and named >= MAX_STREAM_IDS:
            raise Refused(400, "websocket_stream_limit_reached", f"a socket may use {MAX_STREAM_IDS} stream_ids")
        return stream_id

    def _create(self, message: dict[str, Any]) -> CreateResponse:
        kind = message.get("type")
        if kind != "response.create":
            raise Refused(400, "unsupported_event", f"{kind!r} is not supported: send response.create (or .steer)")
        if message.get("generate") is False:
            raise Refused(400, "unsupported_parameter", "generate: a warm-up (false) is not supported: send the turn")
        # `stream` is implicit over a socket; `background` is taken (see the module's docstring).
        return CreateResponse.model_validate(
            {k: v for k, v in message.items() if k not in ("type", "stream_id", "generate", "stream")}
        )

    def _enqueue(self, stream_id: str | None, body: CreateResponse) -> None:
        if self.waiting >= MAX_WAITING:
            raise Refused(429, "too_many_requests", f"{MAX_WAITING} creates wait on this socket already")
        lane = self.lanes.setdefault(stream_id, Lane(stream_id))
        lane.waiting.append((time.time(), body))  # its run's time to first delta starts as it came
        self.waiting += 1
        if lane.task is None:
            self._start(lane)

    def _start(self, lane: Lane) -> None:
        lane.task = asyncio.create_task(self._serve(lane))
        lane.task.add_done_callback(_report)

    async def _serve(self, lane: Lane) -> None:
        """The lane's creates, one response after another."""
        try:
            while lane.waiting:
                async with self.active:
                    received_at, body = lane.waiting.popleft()
                    self.waiting -= 1
                    first_delta.RECEIVED_AT.set(received_at)  # the lane's own task: its own context
                    await self._respond(lane.stream_id, body)
        except Exception:  # a bug, which _report logs: the lane's other creates are still served
            lane.task = None
            if lane.waiting:
                self._start(lane)
            raise
        lane.task = None  # no await since the loop's check: a create appended now starts a new task

    async def _respond(self, stream_id: str | None, body: CreateResponse) -> None:
        try:
            async with self.streams.reserve():  # taken first: a 429 started nothing
                ref = await self._create_response(body)
                events = events_of(ref, background=body.background)
                batch = self.streams.settings.sse_batch
                while True:
                    self.in_flight[ref.id] = InFlight(ref, events, body.background, stream_id)
                    async for parts in follow(self.streams.hub, ref, events, batch, TRANSPORT):
                        await self.send(parts, stream_id)
                    # Not reached if the socket closed meanwhile: `close` then finds it in flight.
                    del self.in_flight[ref.id]
                    if not events.steered:
                        break
                    ref = ref.successor()  # the run goes on with the steer: its next response
                    events = events_of(ref, background=body.background)
            if not events.finished and not self.shutdown.started:  # (a stopping gateway closes the socket: 1012)
                gone = SessionNotFound(ref.session.session_id)
                await self.error(*describe(gone), "the response's conversation was deleted", stream_id)
        except TokentailError as exc:
            status, code = describe(exc)
            await self.error(status, code, str(exc) if status < 500 else "internal error", stream_id)
        except ValidationError as exc:
            await self.error(422, "validation_error", _problems(exc), stream_id)
        except Exception as exc:
            if (outage := describe_outage(exc)) is None:
                raise
            await self.error(503, outage[0], outage[1], stream_id)  # Redis is unwell: the create may be sent again

    async def _steer(self, message: dict[str, Any]) -> None:
        """A `response.steer`: stored, then answered (steering.py); refused with `response.steer.failed`."""
        target = self.in_flight.get(str(message.get("previous_response_id")))
        sent = max(target.events.numbering.next - 1, 0) if target else 0
        stream_id = target.stream_id if target else None
        try:
            async with self._lock:  # its lane sends nothing meanwhile: `accepted` comes before the successor
                ref, steer_id = await steer_response(self.requests, self.runs, message)
                answers = [accepted(steer_id, ref.id, sent)]
                if waits := pending(steer_id, ref.id, ref.run, sent):
                    answers.append(waits)
                for answer in answers:
                    await self.websocket.send_text(socket_message(answer, stream_id))
        except SteerFailed as exc:
            await self.send([failed(exc, message, sent)], stream_id)
        except TokentailError as exc:  # a read token's (403)
            status, code = describe(exc)
            await self.error(status, code, str(exc) if status < 500 else "internal error", None)
        except Exception as exc:
            if (outage := describe_outage(exc)) is None:
                raise
            await self.error(503, outage[0], outage[1], None)  # whether it was stored is not known

    async def _create_response(self, body: CreateResponse) -> ResponseRef:
        """`POST /v1/responses`'s create, carried through a close of the socket meanwhile: `close`
        then finds it, to cancel its response once its run is queued."""
        creating = asyncio.ensure_future(self.requests.create(body))
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            self.creating.append((creating, body.background))
            raise

    async def send(self, parts: list[Part], stream_id: str | None) -> None:
        messages = [socket_message(part, stream_id) for part in parts]
        async with self._lock:
            for message in messages:
                await self.websocket.send_text(message)

    async def error(self, status: int, code: str, message: str, stream_id: str | None) -> None:
        error = {"type": code, "code": code, "message": message, "param": None}
        event = {"type": "error", "status": status, "error": error}
        async with self._lock:
            await self.websocket.send_text(compact(event if stream_id is None else {**event, "stream_id": stream_id}))

    async def close(self) -> None:
        """The socket closed: stop its lanes, then cancel its responses that were not `background`
        and had not ended (unless the gateway is stopping)."""
        tasks = [lane.task for lane in self.lanes.values() if lane.task is not None]
        await socket_tasks.stop(tasks)
        for creating, background in self.creating:  # their runs were queued, or refused
            try:
                ref = await creating
            except Exception:
                continue
            self.in_flight[ref.id] = InFlight(ref, events_of(ref), background)
        for left in self.in_flight.values():
            if not left.background:
                await cancel_unless_ended(self.runs, self.shutdown, left.ref, left.events)
        self.in_flight.clear()


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None and not socket_tasks.closed_by_client(exc):
        logger.error("a Responses API socket's lane failed", exc_info=exc)


def socket_message(part: Part, stream_id: str | None) -> str:
    if part["type"] == "error":  # a gap: over a socket, an error event nests its fields in `error`
        error = {"type": part["code"], "code": part["code"], "message": part["message"], "param": part["param"]}
        part = {"type": "error", "sequence_number": part["sequence_number"], "error": error}
    return compact(part if stream_id is None else {**part, "stream_id": stream_id})


def _problems(exc: ValidationError) -> str:
    """A body's problems, as the HTTP API words them (gateway/errors.py)."""
    return "; ".join(f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors())
