"""Keeps a run's lease alive while the worker streams it."""

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType

from tokentail.shared.store.scripts.runs import Renewal
from tokentail.worker.writes.run_writes import RunLease

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the lease every third of its lifetime. If it is lost, says so (`on_lost`, which stops
    the run's task): another worker may own the run now, so stop generating at once rather than at
    the next (fenced) append.
    A renewal that fails (Redis unreachable, full) is tried again at the next beat: the lease stays
    this worker's until a reaper takes it, which no reaper does while Redis is unwell. A renewal
    also learns of a pending cancel, and of steers waiting, in case their pub/sub messages were missed."""

    def __init__(
        self, lease: RunLease, lease_ms: int, on_cancel: Callable[[], object], on_lost: Callable[[], object]
    ) -> None:
        self._lease = lease
        self._interval = lease_ms / 3000
        self._on_cancel = on_cancel
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "LeaseKeeper":
        self._task = asyncio.create_task(self._renew())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Stop the renewals before the run writes its terminal event (which deletes the lease), so a
        # renewal in flight cannot mistake a finished run for a lost one.
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        # The cancelled task keeps its CancelledError, whose traceback keeps `_renew`'s frame, which keeps
        # this keeper: a cycle holding the run's whole state (its writer, journal, record...) until a
        # collection of the oldest objects, which at thousands of runs stopped the loop for seconds.
        self._task = None

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # On the beat shared by every run of this process (multiples of the interval), so that
            # their renewals go to Redis together, in one round trip (shared/connections/round_trips.py).
            await asyncio.sleep(self._interval - loop.time() % self._interval)
            try:
                renewed = await self._lease.renew()
            except Exception as exc:  # Redis unreachable or refusing writes: try again at the next beat
                logger.warning(
                    "lease renewal of run %s of session %s failed: %s",
                    self._lease.run_id,
                    self._lease.session,
                    exc,
                )
                continue
            if renewed is Renewal.CANCEL_PENDING:
                self._on_cancel()
            elif renewed is Renewal.STEERED:
                self._lease.inbox.sent.set()
            elif renewed is Renewal.LOST:
                logger.warning(
                    "run %s of session %s lost its lease; stopping it",
                    self._lease.run_id,
                    self._lease.session,
                )
                self._on_lost()
                return
