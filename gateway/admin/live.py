"""The console's own stream (SSE): the overview, and with `session` and `run` that run's timeline, as
whole snapshots when they changed, at most once a second, and at once (within TICK_SECONDS) when a new run
is queued (the runs index's newest entry, one cheap read, tells); an operator needs no token by token;
`: ping` after 15 quiet seconds. Each event's id is its time (ms); every event is a whole snapshot, so a
client that reconnects with `Last-Event-ID` misses nothing by starting from the current one.

One gateway makes one overview a second per scope (every tenant, or one tenant), however many consoles
follow it; and it holds at most MAX_STREAMS of these streams per scope (429 beyond): a tenant's key that
opens many holds up only its own tenant's consoles. A stream ends when the gateway
begins to stop, and its client reconnects to another."""

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from tokentail.gateway.admin.access import Admin
from tokentail.shared.vocabulary.errors import RateLimited

PERIOD_SECONDS = 1.0
TICK_SECONDS = 0.25
PING_SECONDS = 15.0
MAX_STREAMS = 16  # per scope: every tenant (admin keys), or one tenant's
# The run a stream follows: its session's position and its timeline's JSON (None: gone).
Followed = Callable[[], Awaitable[tuple[int, bytes] | None]]


@dataclass(slots=True)
class Snapshot:
    body: bytes
    made_at: float  # monotonic
    looked_at: float  # when its newest run was last compared
    newest: object  # the scope's newest run when it was made


class Snapshots:
    """Each scope's overview, made again once PERIOD_SECONDS old, or as soon as its newest run changed
    (looked at once a TICK_SECONDS), whoever asks for it: one gateway makes one per scope, however many
    consoles follow it."""

    def __init__(self, make: Callable[[Admin], Awaitable[bytes]], newest: Callable[[Admin], Awaitable[object]]) -> None:
        self._make = make
        self._newest = newest
        self._made: dict[str | None, Snapshot] = {}
        self._locks: dict[str | None, asyncio.Lock] = {}

    async def overview(self, admin: Admin) -> bytes:
        scope = admin.tenant
        async with self._locks.setdefault(scope, asyncio.Lock()):
            made, now = self._made.get(scope), time.monotonic()
            if made is not None and now - made.looked_at < TICK_SECONDS:
                return made.body
            newest = await self._newest(admin)
            if made is not None and newest == made.newest and now - made.made_at < PERIOD_SECONDS:
                made.looked_at = now
                return made.body
            body = await self._make(admin)
            self._made[scope] = Snapshot(body, now, now, newest)
            return body


class LiveStreams:
    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        self.open: dict[str | None, int] = {}  # per scope
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    def stream(self, admin: Admin, timeline: Followed | None) -> AsyncGenerator[bytes]:
        """`timeline`: the followed run's session position and timeline (None when gone), if one is followed."""
        if self.open.get(admin.tenant, 0) >= MAX_STREAMS:
            raise RateLimited(f"this gateway serves {MAX_STREAMS} console streams of this scope already", 5)
        return self._frames(admin, timeline)

    async def _frames(self, admin: Admin, timeline: Followed | None) -> AsyncGenerator[bytes]:
        scope = admin.tenant
        self.open[scope] = self.open.get(scope, 0) + 1  # once it runs: one never started runs no `finally`
        try:
            yield b"retry: 1000\n\n"
            last_overview: bytes | None = None
            last_position: int | None = None
            timeline_at = 0.0
            quiet_since = time.monotonic()
            while not self.stopping.is_set():
                now_ms = int(time.time() * 1000)
                frames = []
                overview = await self.snapshots.overview(admin)
                if overview != last_overview:
                    frames.append(_frame(now_ms, b"overview", overview))
                    last_overview = overview
                if timeline is not None and time.monotonic() - timeline_at >= PERIOD_SECONDS:
                    timeline_at = time.monotonic()
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
                    await asyncio.wait_for(self.stopping.wait(), TICK_SECONDS)
                except TimeoutError:
                    pass
        finally:
            self.open[scope] -= 1


def _frame(event_id: int, event: bytes, data: bytes) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event, data)
