"""The console's own stream (SSE): the overview, and with `session` and `run` that run's timeline, as
whole snapshots at most once a second and only when they changed (an operator needs no token by token);
`: ping` after 15 quiet seconds. Each event's id is its time (ms); every event is a whole snapshot, so a
client that reconnects with `Last-Event-ID` misses nothing by starting from the current one.

One gateway makes one overview a second per scope (every tenant, or one tenant), however many consoles
follow it; and it holds at most MAX_STREAMS of these streams (429 beyond). A stream ends when the gateway
begins to stop, and its client reconnects to another."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from tokentail.gateway.admin.access import Admin
from tokentail.shared.vocabulary.errors import RateLimited

PERIOD_SECONDS = 1.0
PING_SECONDS = 15.0
MAX_STREAMS = 64
# The run a stream follows: its session's position and its timeline's JSON (None: gone).
Followed = Callable[[], Awaitable[tuple[int, bytes] | None]]


class Snapshots:
    """Each scope's overview, made at most once a PERIOD_SECONDS whoever asks for it."""

    def __init__(self, make: Callable[[Admin], Awaitable[bytes]]) -> None:
        self._make = make
        self._made: dict[str | None, tuple[float, bytes]] = {}
        self._locks: dict[str | None, asyncio.Lock] = {}

    async def overview(self, admin: Admin) -> bytes:
        scope = admin.tenant
        lock = self._locks.setdefault(scope, asyncio.Lock())
        async with lock:
            made = self._made.get(scope)
            if made is not None and time.monotonic() - made[0] < PERIOD_SECONDS:
                return made[1]
            body = await self._make(admin)
            self._made[scope] = (time.monotonic(), body)
            return body


class LiveStreams:
    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        self.open = 0
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    def stream(self, admin: Admin, timeline: Followed | None) -> AsyncIterator[bytes]:
        """`timeline`: the followed run's session position and timeline (None when gone), if one is followed."""
        if self.open >= MAX_STREAMS:
            raise RateLimited(f"this gateway serves {MAX_STREAMS} console streams already; try another", 5)
        return self._frames(admin, timeline)

    async def _frames(self, admin: Admin, timeline: Followed | None) -> AsyncIterator[bytes]:
        self.open += 1  # counted once it runs: a generator never started never runs its `finally`
        try:
            yield b"retry: 1000\n\n"
            last_overview: bytes | None = None
            last_position: int | None = None
            quiet_since = time.monotonic()
            while not self.stopping.is_set():
                now_ms = int(time.time() * 1000)
                frames = []
                overview = await self.snapshots.overview(admin)
                if overview != last_overview:
                    frames.append(_frame(now_ms, b"overview", overview))
                    last_overview = overview
                if timeline is not None:
                    followed = await timeline()
                    if followed is not None and followed[0] != last_position:
                        last_position = followed[0]
                        frames.append(_frame(now_ms, b"timeline", followed[1]))
                if frames:
                    quiet_since = time.monotonic()
                    yield b"".join(frames)
                elif time.monotonic() - quiet_since >= PING_SECONDS:
                    quiet_since = time.monotonic()
                    yield b": ping\n\n"
                try:
                    await asyncio.wait_for(self.stopping.wait(), PERIOD_SECONDS)
                except TimeoutError:
                    pass
        finally:
            self.open -= 1


def _frame(event_id: int, event: bytes, data: bytes) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event, data)
