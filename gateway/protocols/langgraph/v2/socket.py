"""The v2 protocol's WebSocket conversation (v2/routes.py serves it at
`/langgraph/threads/{thread_id}/stream/events`): one thread, many commands and subscriptions.

    client → server   {"id", "method", "params"}: a command (v2/commands.py), or
                      subscription.subscribe {channels, namespaces?, depth?, since?, last_event_id?}
                      subscription.unsubscribe {subscription_id}
                      subscription.reconnect {last_event_id, subscriptions?}
    server → client   {"type": "success" | "error", "id", ...}: each command's response
                      {"type": "event", ...}: each subscription's envelopes (v2/render.py)

A subscription is a stream of its own (v2/feed.py): it replays the thread's last run from its start
(or what follows `since` / `last_event_id`) and goes on across runs until unsubscribed. The SDK
subscribes again after it reconnects and drops by `event_id` what it has; `subscription.reconnect`
restarts this socket's subscriptions (or those named) right after `last_event_id` instead, and those
it subscribes after it start there too (a new socket sends it first, then its subscribes).

A socket holds at most `MAX_SUBSCRIPTIONS` subscriptions, and each holds one of its tenant's stream
slots (and of its stream token's) besides the socket's own, as the stream it is: a subscribe past
either bound is answered with an error and the socket goes on.

A socket's subscriptions send in the thread's order (`SendOrder`), as one stream of the thread would:
the SDK pauses every other subscription just after a run's terminal `lifecycle` event, so an
envelope another subscription sent after it (a message's last delta, its finish) was lost to it.
"""

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket
from pydantic import ValidationError

from tokentail.gateway import socket_tasks
from tokentail.gateway.protocols.langgraph.v2.commands import Command, V2Commands, error_code, failure, success
from tokentail.gateway.protocols.langgraph.v2.feed import StreamRequest, V2Feed, values_reader
from tokentail.gateway.protocols.langgraph.v2.render import Cursor, Filter
from tokentail.gateway.reading.streams import Streams
from tokentail.shared.connections.outage import is_outage
from tokentail.shared.vocabulary.errors import TokentailError

logger = logging.getLogger(__name__)


MAX_SUBSCRIPTIONS = 16  # on one socket (the SDK holds a few: one per channel set it follows)
TOO_MANY = f"too_many_subscriptions: this socket holds {MAX_SUBSCRIPTIONS}, its bound: unsubscribe one first"

Key = tuple[int, int]  # an envelope's place: its event's seq, then its place among the event's envelopes


class SendOrder:
    """Each subscription of a socket sends an envelope only when no other may still send one before it.
    A subscription says where it stands: the next envelope it sends, or, between batches, that it
    may send any of the events after the last it read (every feed of a thread reads every event)."""

    def __init__(self) -> None:
        self._next: dict[str, Key] = {}
        self._moved = asyncio.Event()
        self._waiting = 0  # subscriptions waiting for their turn: none, and a move wakes nobody

    def read_through(self, name: str, seq: int) -> None:
        self._stand(name, (seq + 1, -1))

    async def turn(self, name: str, key: Key) -> None:
        self._stand(name, key)
        while any(other < key for held, other in self._next.items() if held != name):
            self._waiting += 1
            try:
                await self._moved.wait()
            finally:
                self._waiting -= 1

    def leave(self, name: str) -> None:
        self._next.pop(name, None)
        self._wake()

    def _stand(self, name: str, key: Key) -> None:
        self._next[name] = key
        self._wake()

    def _wake(self) -> None:
        if self._waiting:  # (an envelope sent with nobody waiting makes no event)
            self._moved.set()  # (each waiter holds the event it waits on)
            self._moved = asyncio.Event()


def _key(part: dict[str, Any]) -> Key | None:
    """Where an envelope goes in the thread's order (v2/render.py's ids: `<ms>-<seq>.<k>` before the
    event's last, `<ms>-<seq>` its last, `.values` after it); None for one with no place."""
    seq, event_id = part.get("seq"), part.get("event_id")
    if not isinstance(seq, int) or not seq or not isinstance(event_id, str):
        return None
    _, dot, k = event_id.partition(".")
    return (seq, int(k) if k.isdigit() else 1 << 21 if k == "values" else 1 << 20) if dot else (seq, 1 << 20)


@dataclass(frozen=True, slots=True)
class Subscription:
    filter: Filter
    task: asyncio.Task[None]
    slot: str | None  # the stream slot it holds (None: streams are not limited)


class ThreadSocket:
    def __init__(self, websocket: WebSocket, streams: Streams, commands: V2Commands) -> None:
        self.websocket = websocket
        self.streams = streams
        self.commands = commands
        self._lock = asyncio.Lock()  # the subscriptions' tasks and the commands all send
        self._subscriptions: dict[str, Subscription] = {}
        self._count = 0
        self._cursor: Cursor | None = None  # a reconnect's: where the socket's subscriptions start
        self._order = SendOrder()

    async def send(self, frame: dict[str, Any]) -> None:
        async with self._lock:
            await self.websocket.send_text(json.dumps(frame, separators=(",", ":"), ensure_ascii=False))

    async def take(self, frame: dict[str, Any]) -> None:
        try:
            command = Command.model_validate(frame)
        except ValidationError as invalid:
            command_id = frame.get("id") if isinstance(frame.get("id"), int) else None
            await self.send(failure(command_id, "invalid_argument", str(invalid)))
            return
        try:
            await self.send(await self._answer(command))
        except TokentailError as error:  # who may not call, a spent budget, a thread with no session yet
            await self.send(failure(command.id, error_code(error), str(error)))
        except Exception as exc:
            if not is_outage(exc):
                raise
            await self.send(failure(command.id, "unknown_error", "Redis is unavailable: retry"))

    async def _answer(self, command: Command) -> dict[str, Any]:
        params = command.params
        match command.method:
            case "subscription.subscribe":
                try:
                    filter = _filter_of(params)
                    cursor = _cursor_of(params)
                except (ValueError, TypeError, TokentailError) as invalid:
                    return failure(command.id, "invalid_argument", str(invalid))
                if len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
                    return failure(command.id, "invalid_argument", TOO_MANY)
                slot = await self.streams.slots.take(self.streams.caller.tenant, self.streams.caller.session_id)
                self._count += 1
                subscription_id = f"sub-{self._count}"
                await self._start(subscription_id, filter, cursor or self._cursor, slot)
                return success(command.id, {"subscription_id": subscription_id})
            case "subscription.unsubscribe":
                named = str(params.get("subscription_id"))
                held = self._subscriptions.pop(named, None)
                if held is None:
                    return failure(command.id, "no_such_subscription", f"no subscription {named!r}")
                await self._stop([held])
                return success(command.id, {})
            case "subscription.reconnect":
                try:
                    cursor = Cursor.of(str(params.get("last_event_id", "")))
                except TokentailError as invalid:
                    return failure(command.id, "invalid_argument", str(invalid))
                self._cursor = cursor
                listed = params.get("subscriptions")
                ids = [i for i in self._subscriptions if not isinstance(listed, list) or i in listed]
                for subscription_id in ids:
                    held = self._subscriptions.pop(subscription_id)
                    await socket_tasks.stop([held.task])  # (its slot goes on with it)
                    await self._start(subscription_id, held.filter, cursor, held.slot)
                return success(command.id, {"restored": True, "missed_events": None, "subscriptions": ids})
        return await self.commands.answer(command)

    async def _start(self, subscription_id: str, filter: Filter, cursor: Cursor | None, slot: str | None) -> None:
        """Start the subscription, which holds `slot` from now on (given back here if it cannot start)."""
        try:
            session = await self.streams.store.get_session(await self.commands.turns.session(self.commands.thread_id))
        except BaseException:
            await self.streams.slots.release(slot)
            raise
        feed = V2Feed(self.streams, session, filter, cursor, values_reader(self.streams.store), "langgraph-v2-ws")
        self._order.read_through(subscription_id, feed.start)
        task = asyncio.create_task(self._pump(subscription_id, feed))
        task.add_done_callback(self._failed)
        self._subscriptions[subscription_id] = Subscription(filter, task, slot)

    async def _stop(self, subscriptions: list[Subscription]) -> None:
        await socket_tasks.stop([held.task for held in subscriptions])
        for held in subscriptions:
            await self.streams.slots.release(held.slot)

    async def _pump(self, subscription_id: str, feed: V2Feed) -> None:
        feed.read_through = lambda seq: self._order.read_through(subscription_id, seq)
        try:
            async for parts in feed.batches():
                for part in parts:
                    if (key := _key(part)) is not None:
                        await self._order.turn(subscription_id, key)
                    await self.send(part)
        finally:
            feed.stop()
            self._order.leave(subscription_id)

    def _failed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None and not socket_tasks.closed_by_client(exc):
            logger.error("a v2 subscription failed", exc_info=exc)

    async def close(self) -> None:
        await self._stop(list(self._subscriptions.values()))
        self._subscriptions.clear()


def _filter_of(params: dict[str, Any]) -> Filter:
    return StreamRequest.model_validate(params).filter()


def _cursor_of(params: dict[str, Any]) -> Cursor | None:
    last_event_id, since = params.get("last_event_id"), params.get("since")
    if isinstance(last_event_id, str) and last_event_id:
        return Cursor.of(last_event_id)
    if isinstance(since, int) and since >= 0:
        return Cursor.since(since)
    return None
