"""`notifications/tasks` on `subscriptions/listen` (the Tasks extension's push, SEP-2663 over SEP-2575):
a client that lists `taskIds` in the listen request's `notifications` is told each of those tasks as
it changes, a `DetailedTask` as `tasks/get` would answer then, on the listen stream.

The `mcp` SDK's listen handler serves the stream (its ack first, the server's change notifications,
the subscription id on every frame); this middleware of the SDK's server adds the tasks to it: the ack
names the tasks it will tell of (those found, the caller's), and each is followed through the hub
from its session's events, so any gateway tells of a task another started, and the change of a
run on any worker is seen at once. A task is told as it is when the stream opens, then at each
change, the last time when it ends; the stream stays open until the client closes it (it may carry
the server's other notifications). A listen that follows tasks holds one of the tenant's stream
slots, as a waiting tool call does.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import Any, cast

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.server import require_client_extension
from mcp.server.session import ServerSession
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import (
    Notification,
    ServerNotification,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
)

from tokentail.gateway.commands.tasks import Task
from tokentail.gateway.protocols.mcp import render
from tokentail.gateway.protocols.mcp.tasks import Calls, invalid, limited
from tokentail.gateway.reading.feed import EventFeed, start_position
from tokentail.shared.vocabulary.errors import RateLimited, TaskNotFound

logger = logging.getLogger(__name__)

MOST_TASKS = 100  # the tasks one listen request may follow: those beyond are left out of its ack
# The events that may change what `tasks/get` shows of a task: its runs' starts and ends, questions, answers.
CHANGES = (b"run.", b"input.")

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _task_ids(ctx: ServerRequestContext[Any, Any]) -> list[str] | None:
    """The task ids a listen request asks to be told of (None: it asks for none)."""
    notifications = (ctx.params or {}).get("notifications")
    asked = notifications.get("taskIds") if isinstance(notifications, dict) else None
    if asked is None or asked == []:
        return None
    if not isinstance(asked, list) or not all(isinstance(task_id, str) for task_id in asked):
        raise invalid("notifications.taskIds: a list of task ids")
    return list(dict.fromkeys(asked))[:MOST_TASKS]


class _Listening:
    """The listen request's session as the SDK's handler uses it, but for its ack, which names the
    tasks too; the tasks' notifications are sent after it (the ack is the stream's first frame)."""

    def __init__(self, session: ServerSession, subscription_id: str | int, task_ids: list[str]) -> None:
        self._session = session
        self._subscription_id = subscription_id
        self._task_ids = task_ids
        self._acked = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def send_notification(self, notification: ServerNotification, related_request_id: Any = None) -> None:
        if isinstance(notification, SubscriptionsAcknowledgedNotification):
            params = notification.params
            honored = params.notifications.model_dump(by_alias=True, exclude_none=True) | {"taskIds": self._task_ids}
            notification = SubscriptionsAcknowledgedNotification(
                params=SubscriptionsAcknowledgedNotificationParams(
                    notifications=SubscriptionFilter.model_validate(honored), _meta=params.meta
                )
            )
        await self._session.send_notification(notification, related_request_id)
        if isinstance(notification, SubscriptionsAcknowledgedNotification):
            self._acked.set()

    async def tell(self, task: dict[str, Any]) -> None:
        """One `notifications/tasks`, once the ack is out."""
        await self._acked.wait()
        params = {**task, "_meta": {SUBSCRIPTION_ID_META_KEY: self._subscription_id}}
        told = Notification[dict[str, Any], str](method="notifications/tasks", params=params)
        await self._session.send_notification(cast(ServerNotification, told), self._subscription_id)


class TaskNotifications:
    """A middleware of the SDK's server: `subscriptions/listen` with `taskIds`, the tasks told on it."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        asked = _task_ids(ctx) if ctx.method == "subscriptions/listen" else None
        if asked is None or ctx.request_id is None:
            return await call_next(ctx)
        require_client_extension(ctx, render.TASKS)  # the spec's -32021 for a client that did not declare it
        calls = Calls.of(ctx)
        found = []
        for task_id in asked:
            try:
                found.append(await calls.task(task_id))
            except TaskNotFound:
                continue  # unknown, or another tenant's: left out of the ack
        try:
            async with calls.streams.reserve():
                result = await _listen(ctx, call_next, calls, found)
        except RateLimited as exc:
            raise limited(exc) from None
        return result


async def _listen(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext, calls: Calls, tasks: list[Task]
) -> HandlerResult:
    """The SDK's listen stream, with `tasks` followed on it for as long as it lasts."""
    assert ctx.request_id is not None
    listening = _Listening(ctx.session, ctx.request_id, [task.id for task in tasks])
    followers = [asyncio.ensure_future(follow(calls, task, listening.tell)) for task in tasks]
    try:
        return await call_next(replace(ctx, session=cast(ServerSession, listening)))
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


async def follow(calls: Calls, task: Task, tell: Send) -> None:
    """Tell `task` as it is, then each time it changes, until it ends (or its session does)."""
    try:
        await _follow(calls, task, tell)
    except TaskNotFound:
        return  # its session was deleted, or expired: nothing more to tell
    except Exception:
        logger.exception("task %s: its notifications stopped", task.id)


async def _follow(calls: Calls, task: Task, tell: Send) -> None:
    ttl = calls.settings.session_ttl_seconds
    told = render.detailed(task, ttl)
    await tell(told)
    if task.terminal:
        return
    session_id = task.session.session_id
    # From the stream's top as read with the task's record: whatever changes it after is an event after it.
    start = await start_position(calls.tasks.store, session_id, task.session.last_event_id)
    hub, batch = calls.streams.hub, calls.settings.sse_batch
    feed = EventFeed(hub, session_id, start, batch, until_idle=False, transport="mcp", writes_deltas=False)
    async with aclosing(feed.__aiter__()) as batches:
        async for got in batches:
            if not any(event.type.startswith(CHANGES) for event in got.events):
                continue
            task = await calls.tasks.get(task.id)
            if (now := render.detailed(task, ttl)) != told:
                told = now
                await tell(now)
            if task.terminal:
                return
