"""The session's WebSocket (routes/socket.py serves it): its frames, and the conversation on it.

    server → client   {"id": 7, "event": "message.delta", "data": {...}}   one text message per event
                      {"event": "gap", "data": {...}}                      (no id)
                      {"id": 9, "event": "snapshot", "data": {"events": [...]}}   a compacted catch-up
                      {"type": "ack", "request": "run" | "cancel" | "resume" | "input" | "steer", ...}
                      {"type": "error", "error": {"type": ..., "message": ...}}
    client → server   {"type": "run", "input": "...", "model"?, "params"?, "multitask"?}
                      {"type": "cancel", "run_id"?: "r_…"}   (without run_id: the run this socket showed going)
                      {"type": "resume", "last_event_id": N, "catch_up"?: "snapshot"}
                      {"type": "input", "run_id": "r_…", "input_id": "in_…", "answer": ...}
                      {"type": "steer", "input": "...", "run_id"?: "r_…"}

The stored event data is spliced in as it is; heartbeats are the socket's own pings, so an empty
batch sends nothing. routes/socket.py has the credentials, limits and close codes.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from tokentail.gateway.access.auth import Caller
from tokentail.gateway.access.ids import new_steer_id
from tokentail.gateway.access.limits import RunBudget
from tokentail.gateway.commands.questions import answer_question
from tokentail.gateway.commands.turns import queue_follow_up, steer_active_run
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.gateway.errors import describe, describe_outage
from tokentail.gateway.live import first_delta
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.feed import Batch, EventFeed, parse_last_event_id, start_position
from tokentail.gateway.schemas import Answer, CancelAccepted, CreateRun, SteerRequest
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import Entry, SessionStore, StoredEvent
from tokentail.shared.vocabulary.errors import (
    Forbidden,
    InputNotPending,
    InputTooLarge,
    InvalidInput,
    QuestionNotFound,
    RateLimited,
    RunConflict,
    RunNotActive,
    RunNotFound,
)
from tokentail.shared.vocabulary.events import Gap


def event_messages(events: list[StoredEvent]) -> list[str]:
    # The stored data is JSON already: splice it in rather than parse and re-serialise it.
    return [f'{{"id":{e.seq},"event":"{e.type.decode()}","data":{e.data.decode()}}}' for e in events]


def entry_messages(entries: list[Entry]) -> list[str]:
    """`event_messages` of the events these entries hold, from the entries (as sse.frame_entries)."""
    return [
        (b'{"id":%s,"event":"%s","data":%s}' % (i.partition(b"-")[0], fields[1], fields[3])).decode()
        for i, fields in entries
    ]


def gap_message(gap: Gap) -> str:
    return f'{{"event":"gap","data":{gap.model_dump_json()}}}'


def batch_messages(batch: Batch) -> list[str]:
    if batch.snapshot is not None:
        return [f'{{"id":{batch.snapshot.up_to},"event":"snapshot","data":{batch.snapshot.data.decode()}}}']
    messages = [gap_message(batch.gap)] if batch.gap is not None else []
    for chunk in batch.chunks:
        messages += chunk.encoded(event_messages, entry_messages)  # once per chunk, for all its readers
    return messages


# Refusals of one client message: the error goes back on the socket, which stays open.
REFUSALS = (
    RunConflict,
    RunNotActive,
    InputTooLarge,
    InvalidInput,
    Forbidden,
    RateLimited,
    InputNotPending,
    QuestionNotFound,
    RunNotFound,
)


def _json(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class Socket:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._lock = asyncio.Lock()  # the feed and the request handler both send

    async def send(self, message: str) -> None:
        async with self._lock:
            await self.websocket.send_text(message)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(_json(message))

    @contextlib.asynccontextmanager
    async def before_any_event(self) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[None]]]:
        """Hold back the feed while a request runs, and give it a way to answer: so that the ack of
        a run comes before the run's own `run.queued`, as the API promises, however fast the hub is."""
        async with self._lock:
            yield lambda message: self.websocket.send_text(_json(message))

    async def error(self, exc: Exception, type_: str) -> None:
        await self.send_json({"type": "error", "error": {"type": type_, "message": str(exc)}})


class Conversation:
    """One socket's exchange: the feed it follows, and what each client message does."""

    def __init__(
        self,
        socket: Socket,
        caller: Caller,
        session_id: str,
        store: SessionStore,
        runs: SessionWrites,
        hub: StreamHub,
        settings: Settings,
        budget: RunBudget,
    ) -> None:
        self.socket = socket
        self.caller = caller
        self.session_id = session_id
        self.store = store
        self.runs = runs
        self.hub = hub
        self.settings = settings
        self.budget = budget
        self.feed: asyncio.Task[int] | None = None
        # What the client was shown: the last id sent to it, and the queued id of the last run it
        # was told it queued here (its ack comes before its `run.queued`). A cancel that names no
        # run cancels the run these show going, never one the client has not seen yet.
        self.sent_up_to = 0
        self.acked_up_to = 0

    async def follow(self, last_event_id: str | None, catch_up: str | None) -> int:
        """Send the session's events after `last_event_id`, from a task of their own; far behind, a
        snapshot first if `catch_up` asks for one. The id asked for, as read (`parse_last_event_id`)."""
        await self.stop_following()
        after = parse_last_event_id(last_event_id)
        start = await start_position(self.store, self.session_id, after, snapshot=catch_up == "snapshot")
        feed = EventFeed(self.hub, self.session_id, start, self.settings.sse_batch, until_idle=False, transport="ws")
        self.sent_up_to = start.after

        async def run() -> int:
            if start.gap is not None:
                await self.socket.send(gap_message(start.gap))
            async for batch in feed:
                for message in batch_messages(batch):
                    await self.socket.send(message)
                self.sent_up_to = feed.after
            return feed.after

        self.feed = asyncio.create_task(run())
        return after

    async def stop_following(self) -> None:
        if self.feed is not None:
            self.feed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.feed

    async def next_message(self) -> dict[str, Any] | None:
        """The client's next message as a JSON object; None once the feed ended (the session went
        away, or the gateway is stopping). A message that is not one is answered with an error."""
        assert self.feed is not None
        while True:
            receive = asyncio.ensure_future(self.socket.websocket.receive())
            done, _ = await asyncio.wait({receive, self.feed}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                return None
            frame = receive.result()
            if frame["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(frame.get("code", 1000))
            try:
                return self._parse(frame.get("text"))
            except (ValueError, InputTooLarge) as exc:
                await self.socket.error(
                    exc, "input_too_large" if isinstance(exc, InputTooLarge) else "validation_error"
                )

    def _parse(self, text: str | None) -> dict[str, Any]:
        if text is None:
            raise ValueError("messages must be text frames holding a JSON object")
        if len(text) > self.settings.max_request_bytes or len(text.encode()) > self.settings.max_request_bytes:
            raise InputTooLarge(self.settings.max_request_bytes, "the message", "bytes")
        try:
            message = json.loads(text)
        except RecursionError:
            raise ValueError("the message nests too deeply") from None
        if not isinstance(message, dict):
            raise ValueError("messages must be JSON objects")
        return message

    async def handle(self, message: dict[str, Any]) -> None:
        first_delta.RECEIVED_AT.set(time.time())  # a run it queues: its time to first delta starts here
        try:
            match message.get("type"):
                case "run":
                    await self._run(message)
                case "cancel":
                    await self._cancel(message)
                case "resume":
                    await self._resume(message)
                case "input":
                    await self._input(message)
                case "steer":
                    await self._steer(message)
                case _:
                    refused = ValueError("type must be run, cancel, resume, input or steer")
                    await self.socket.error(refused, "validation_error")
        except ValidationError as exc:
            await self.socket.error(exc, "validation_error")
        except REFUSALS as exc:
            await self.socket.error(exc, describe(exc)[1])
        except Exception as exc:
            if (outage := describe_outage(exc)) is None:
                raise
            await self.socket.error(RuntimeError(outage[1]), outage[0])  # Redis is unwell: try again later

    async def _run(self, message: dict[str, Any]) -> None:
        self.caller.require_chat()
        body = CreateRun.model_validate({k: v for k, v in message.items() if k != "type"})
        async with self.socket.before_any_event() as answer:
            run = await queue_follow_up(
                self.store, self.runs, self.settings, self.budget, self.caller, self.session_id, body
            )
            self.acked_up_to = max(self.acked_up_to, run.queued_seq or 0)
            await answer({"type": "ack", "request": "run", "run_id": run.run_id})

    async def _cancel(self, message: dict[str, Any]) -> None:
        """Cancel the run the client names (`run_id`), or else the one it was shown going; either
        only if it is still the active run (see cancel_run.lua)."""
        self.caller.require_chat()
        named = message.get("run_id")
        if named is not None and not isinstance(named, str):
            raise InvalidInput("run_id: the id of the run to cancel")
        async with self.socket.before_any_event() as answer:
            if named is None:
                session = await self.store.get_session(self.session_id)
                shown = session.run_shown_at(max(self.sent_up_to, self.acked_up_to))
                if shown is None:  # the client has seen no run going: nothing it could mean to stop
                    await answer({"type": "ack", "request": "cancel", "run_id": None, "status": "idle"})
                    return
                named = shown.run_id
            outcome, run_id = await self.runs.cancel_run(self.session_id, named)
            accepted = CancelAccepted.of(outcome, run_id)
            await answer({"type": "ack", "request": "cancel", "run_id": accepted.run_id, "status": accepted.status})

    async def _input(self, message: dict[str, Any]) -> None:
        self.caller.require_chat()
        body = Answer.model_validate({k: v for k, v in message.items() if k not in ("type", "run_id")})
        run_id = message.get("run_id")
        if not isinstance(run_id, str):
            raise InvalidInput("an input message names the run that asked: run_id")
        async with self.socket.before_any_event() as answer:
            seq = await answer_question(self.store, self.runs, self.session_id, run_id, body.input_id, body.answer)
            await answer(
                {"type": "ack", "request": "input", "run_id": run_id, "input_id": body.input_id, "event_id": seq}
            )

    async def _steer(self, message: dict[str, Any]) -> None:
        self.caller.require_chat()
        body = SteerRequest.model_validate({k: v for k, v in message.items() if k != "type"})
        async with self.socket.before_any_event() as answer:
            accepted = await steer_active_run(
                self.runs, self.settings, self.budget, self.caller.tenant, self.session_id, body, new_steer_id()
            )
            await answer({"type": "ack", "request": "steer", **accepted.model_dump()})

    async def _resume(self, message: dict[str, Any]) -> None:
        position = str(message.get("last_event_id", ""))
        catch_up = message.get("catch_up")
        if catch_up not in (None, "events", "snapshot"):
            raise InvalidInput("catch_up must be events or snapshot")
        after = await self.follow(position, catch_up)
        await self.socket.send_json({"type": "ack", "request": "resume", "last_event_id": after})
