"""Keeps a run's lease alive while the worker streams it."""

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType

from shared.store import Renewal, SessionStore

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the lease every third of its lifetime. If it is lost, cancels the run's task: another
    worker may own the run now, so stop generating at once rather than at the next (fenced) append.
    A renewal that fails (Redis unreachable, full) is tried again at the next beat: the lease stays
    this worker's until a reaper takes it, which no reaper does while Redis is unwell. A renewal
    also learns of a pending cancel, in case its pub/sub message was missed."""

    def __init__(
        self,
        store: SessionStore,
        session_id: str,
        run_id: str,
        lease_token: str,
        lease_ms: int,
        on_cancel: Callable[[], object],
    ) -> None:
        self._store = store
        self._session_id = session_id
        self._run_id = run_id
        self._lease_token = lease_token
        self._interval = lease_ms / 3000
        self._on_cancel = on_cancel
        self._task: asyncio.Task[None] | None = None
        self.lost = False

    async def __aenter__(self) -> "LeaseKeeper":
        self._task = asyncio.create_task(self._renew(asyncio.current_task()))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Stop the renewals before the run writes its terminal event (which deletes the lease), so a
        # renewal in flight cannot mistake a finished run for a lost one.
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _renew(self, run_task: asyncio.Task[object] | None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # On the beat shared by every run of this process (multiples of the interval), so that
            # their renewals go to Redis together, as one pipeline (worker/pipelines.py).
            await asyncio.sleep(self._interval - loop.time() % self._interval)
            try:
                renewed = await self._store.renew_lease(self._session_id, self._run_id, self._lease_token)
            except Exception as exc:  # Redis unreachable or refusing writes: try again at the next beat
                logger.warning("lease renewal failed for session %s: %s", self._session_id, exc)
                continue
            if renewed is Renewal.CANCEL_PENDING:
                self._on_cancel()
            elif renewed is Renewal.LOST:
                logger.warning("run of session %s lost its lease; stopping it", self._session_id)
                self.lost = True
                if run_task is not None:
                    run_task.cancel()
                return
