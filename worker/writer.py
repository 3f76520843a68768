"""The event writer of one run attempt: serialises its appends and coalesces token deltas.

A token that arrives after a quiet spell is appended at once (the first token is never held);
tokens that follow within `flush_interval` are joined into one `message.delta`, appended when the
window closes. At 50 tokens/s and a 50 ms window that is about one append per 2.5 tokens. Any
other event first flushes the pending text, so the stream keeps the order the agent produced.
"""

import asyncio
import time
from collections.abc import Callable

from shared.events import EventData, MessageDelta, event_type_of
from shared.store import SessionStore


class EventWriter:
    def __init__(
        self,
        store: SessionStore,
        session_id: str,
        run_id: str,
        lease_token: str,
        flush_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._session_id = session_id
        self._run_id = run_id
        self._lease_token = lease_token
        self._flush_interval = flush_interval
        self._clock = clock
        self._pending: list[str] = []
        self._last_flush = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._background: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        # Appends go out one at a time, in the order they were taken: asyncio.Lock is FIFO.
        self._lock = asyncio.Lock()
        self.text_parts: list[str] = []  # everything this attempt streamed, flushed or not
        self.events_appended = 0

    async def delta(self, text: str) -> None:
        if self._failure is not None:
            raise self._failure
        if not text:
            return
        self._pending.append(text)
        self.text_parts.append(text)
        if self._timer is not None:
            return
        wait = self._last_flush + self._flush_interval - self._clock()
        if wait <= 0:
            await self.flush()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._flush_in_background)

    async def emit(self, data: EventData) -> None:
        """Append any other event, after the text that came before it."""
        await self.flush()
        await self._write([(event_type_of(data), data.model_dump_json())])

    async def flush(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._last_flush = self._clock()
        await self._write([("message.delta", MessageDelta(run_id=self._run_id, text=text).model_dump_json())])

    def close(self) -> None:
        """Drop a pending timer; pending text is not written (the run ended without it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def _flush_in_background(self) -> None:
        self._timer = None
        self._background = asyncio.ensure_future(self._background_flush())

    async def _background_flush(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # surfaces on the run's next call, which owns error handling
            self._failure = exc

    async def _write(self, events: list[tuple[str, str]]) -> None:
        async with self._lock:
            await self._store.append(self._session_id, self._run_id, self._lease_token, events)
            self.events_appended += len(events)
