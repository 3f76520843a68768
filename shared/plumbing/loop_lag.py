"""How late a process's event loop runs what is due: a tick every `TICK_SECONDS`, its lateness
observed (`tokentail_event_loop_lag_seconds`). A busy loop runs its ready callbacks between two
ticks, and what blocks it (a synchronous call, a long collection of garbage) shows as one late
tick: the gateway and the worker each run one, which the worker's watchdog (worker/process/watchdog.py)
watches from a thread too. The benchmark reads its buckets around each level (bench/levels.py)."""

import asyncio
import time
from collections.abc import Callable

from prometheus_client import Histogram

TICK_SECONDS = 0.1

LOOP_LAG = Histogram(
    "tokentail_event_loop_lag_seconds",
    f"How late the event loop ran a tick due every {TICK_SECONDS:g} s: what it was too busy or blocked for",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class LoopLag:
    """The tick, on `loop`; `on_tick(late)`, if given, is told each tick's lateness too."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_tick: Callable[[float], None] | None = None) -> None:
        self._loop = loop
        self._on_tick = on_tick
        self.last_tick = time.monotonic()  # (read from another thread: a float is written whole)
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.last_tick = time.monotonic()
        self._handle = self._loop.call_later(TICK_SECONDS, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = time.monotonic()
        late = max(0.0, now - self.last_tick - TICK_SECONDS)
        LOOP_LAG.observe(late)
        self.last_tick = now
        self._handle = self._loop.call_later(TICK_SECONDS, self._tick)
        if self._on_tick is not None:
            self._on_tick(late)
