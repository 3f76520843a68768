"""Finds the run that blocks the worker's event loop, says so, and ends it.

All the runs of a worker share one event loop. An agent that makes a synchronous call in async code
(LangChain's `invoke`, `requests.get`, `time.sleep`) stops every one of them while it lasts: no
token goes out, no lease is renewed (past a lease, other workers take the runs over), no cancel is
heard. Nothing on the loop can see that, so a thread watches it: a tick the loop runs every 100 ms
that is a second late means the loop is blocked, and the task it is running then is the culprit.
The worker's log names that run at once, while it blocks; one that blocks longer than
`blocked_loop_seconds` is stopped as soon as the loop runs again, and ends with `run.failed`
(`blocked_event_loop`), saying what to use instead. A block by anything else (tokentail's own
code, a callback) is logged, not acted on.
"""

import asyncio
import logging
import threading
import time

from tokentail.shared.plumbing.loop_lag import TICK_SECONDS, LoopLag
from tokentail.worker import metrics
from tokentail.worker.running import HOW_TO_FIX, RunningRuns, Stop

logger = logging.getLogger(__name__)

REPORT_SECONDS = 1.0  # a block this long is logged


class LoopWatchdog:
    def __init__(self, loop: asyncio.AbstractEventLoop, running: RunningRuns, limit_seconds: float) -> None:
        self._loop = loop
        self._running = running
        self._limit = limit_seconds
        self._lag = LoopLag(loop, self._ticked)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tokentail-loop-watchdog", daemon=True)

    def start(self) -> None:
        self._lag.start()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._lag.stop()

    @staticmethod
    def _ticked(late: float) -> None:
        if late >= REPORT_SECONDS:
            metrics.LOOP_BLOCKED.observe(late)
            logger.warning("the worker's event loop runs again, after %.1f s blocked", late)

    def _watch(self) -> None:
        episode = acted = 0.0  # the last tick before the block being watched, and before the one acted on
        culprit: tuple[str, str] | None = None  # its run and session, if a run blocks
        while not self._stopped.wait(TICK_SECONDS):
            since = self._lag.last_tick
            blocked = time.monotonic() - since
            if blocked < REPORT_SECONDS:
                continue
            if since != episode:  # a new block: what the loop is running now is what blocks it
                episode = since
                task = asyncio.current_task(self._loop)  # read from this thread
                culprit = self._running.run_of(task) if task is not None else None
                self._report(blocked, task, culprit)
            if culprit is not None and self._limit and blocked >= self._limit and acted != since:
                acted = since
                try:  # done when the loop runs again: the run ends with run.failed, if it still holds its lease
                    self._loop.call_soon_threadsafe(self._running.stop, culprit[0], Stop.BLOCKED_LOOP)
                except RuntimeError:  # the loop is closed: the worker is stopping
                    return

    @staticmethod
    def _report(blocked: float, task: "asyncio.Task[object] | None", culprit: tuple[str, str] | None) -> None:
        if culprit is None:
            logger.warning("the worker's event loop has been blocked for %.1f s (by %r)", blocked, task)
            return
        logger.error(
            "run %s of session %s has blocked the worker's event loop for %.1f s, and every run of this worker "
            "with it: %s",
            *culprit, blocked, HOW_TO_FIX,
        )  # fmt: skip
