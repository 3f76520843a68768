"""Calls made while a round trip is on its way, sent together in the next one.

What a worker's concurrent runs ask, one call at a time each: alone, a call goes at once; under
load, the calls made while one round trip is out wait for it to come back, then go together, and
each caller gets its own reply. The worker's arq finishes go so (worker/process/arq_shell.py); the
round trips of any commands (shared/connections/round_trips.py) do the same in a protocol's callback,
with no task of their own.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Joiner(Generic[T, R]):
    """`send` makes one round trip of the items given (at most `most`, if set) and returns one reply
    per item, an exception for an item that failed alone; if `send` raises, every item in it failed."""

    def __init__(self, send: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]], most: int = 0) -> None:
        self._send_batch = send
        self._most = most
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._sending: asyncio.Task[None] | None = None

    def submit(self, item: T) -> "asyncio.Future[R]":
        """`item`'s reply, as a future (a caller that does not wait in a task of its own may hold it)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._sending is None:
            self._sending = asyncio.create_task(self._send())
        return future

    async def idle(self) -> None:
        """Return once every item submitted was sent (or failed)."""
        while self._sending is not None:
            await asyncio.wait([self._sending])

    async def _send(self) -> None:
        try:
            while self._waiting:
                cut = self._most or len(self._waiting)
                batch, self._waiting = self._waiting[:cut], self._waiting[cut:]
                try:
                    replies = await self._send_batch([item for item, _ in batch])
                except asyncio.CancelledError:  # the process is stopping: nobody is left to send them
                    for _, future in batch + self._waiting:
                        future.cancel()
                    self._waiting = []
                    raise
                except Exception as exc:  # the round trip failed: every item in it did
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # its caller stopped waiting (cancelled)
                        continue
                    if isinstance(reply, BaseException):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._sending = None
