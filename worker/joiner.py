"""Calls made while a round trip is on its way, sent together in the next one.

As shared/scripts/pipeline.py joins a worker's appends, for calls that want no reply of their own
but that they were done (a worker's arq job finishes, worker/pickup.py): alone, a call goes at
once; under load, those made while one round trip is out wait for it, then go in one.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Joiner(Generic[T]):
    """`send` makes one round trip of up to `most` items; each caller waits for the one of its item,
    and fails if it did."""

    def __init__(self, send: Callable[[list[T]], Awaitable[None]], most: int) -> None:
        self._send_batch = send
        self._most = most
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._sending: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._sending is None:
            self._sending = asyncio.create_task(self._send())
        return future

    async def idle(self) -> None:
        """Wait until every item submitted has been sent (or failed)."""
        while self._sending is not None:
            await asyncio.wait([self._sending])

    async def _send(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
                try:
                    await self._send_batch([item for item, _ in batch])
                except asyncio.CancelledError:  # nobody is left to send them
                    for _, future in batch + self._waiting:
                        future.cancel()
                    self._waiting = []
                    raise
                except Exception as exc:  # the round trip failed: every item in it did
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._sending = None
