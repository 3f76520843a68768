"""How late a process's event loop runs what is due (shared/plumbing/loop_lag.py)."""

import asyncio
import time

from tests.support.waiting import eventually
from tokentail.shared.plumbing.loop_lag import LOOP_LAG, LoopLag


def _lag_total() -> float:
    return LOOP_LAG._sum.get()  # type: ignore[no-any-return]


async def test_a_blocked_loop_shows_as_a_late_tick() -> None:
    told: list[float] = []
    lag = LoopLag(asyncio.get_running_loop(), told.append)
    lag.start()
    try:
        await eventually(lambda: len(told) >= 1, what="a first tick")
        before = _lag_total()
        time.sleep(0.5)  # noqa: ASYNC251  # the block measured: the loop runs nothing meanwhile, its tick comes late
        await eventually(lambda: len(told) >= 3, what="the ticks after the block")
    finally:
        lag.stop()
    assert max(told) >= 0.35  # due 0.1 s after the tick before, run after the 0.5 s block
    assert _lag_total() - before >= 0.35
