"""Finds runs whose worker died, and queues them for another worker to take over.

A run's lease has a deadline, which its worker pushes back every third of a lease; the leases
index (shared/store/lease_index.py) names the sessions to look at, and when. A deadline that passed
means the worker stopped renewing: it died, stalled, or could not reach Redis. Only the first
calls for a takeover. So a reaper acts only once Redis has been healthy
for a whole lease, as it saw it: each sweep begins with a write (refused by a full or read-only
Redis), and a sweep that fails, is slow, or comes late starts the count again. A worker cut off by
a Redis restart, a pause or a full memory then renews within that lease and keeps its run: an
outage costs a wait, not a restart of every answer. A dead worker's run is taken over a lease
after its last renewal (plus one sweep interval).

Each sweep pages through all the entries that are due: `requeue_run.lua` looks at each session
(requeues its run, finds it renewed, finds nothing to take over, or pushes again the job owed to a
run queued and not started: a backstop, so no run stays queued without a job) and the entry is
settled (dropped, or moved to the renewed deadline or the queued run's next look), so stale entries
cannot starve the runs behind them.
"""

import asyncio
import logging
import time
from collections.abc import Callable

from redis import exceptions as redis_errors

from tokentail.shared.plumbing import run_spans, tracing
from tokentail.shared.store.keys import LANE_SEPARATOR, session_of
from tokentail.shared.store.reads import decode_run
from tokentail.shared.store.scripts.runs import Requeue
from tokentail.shared.vocabulary.events import RunFailed
from tokentail.worker.writes.run_writes import RunWrites

logger = logging.getLogger(__name__)

PAGE = 100


class Reaper:
    def __init__(
        self,
        runs: RunWrites,
        interval: float,
        lease_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runs = runs
        self._interval = interval
        self._lease = lease_seconds
        # A sweep slower than this, or a gap this much longer than the interval, means Redis (or
        # this process) stalled: holders may have missed renewals through no fault of their own.
        self._stall = lease_seconds / 3
        self._clock = clock
        self._healthy_since: float | None = None
        self._last_sweep: float | None = None
        self.redis_ok_at = clock()  # for the readiness probe

    async def run_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except (redis_errors.RedisError, OSError) as exc:
                self._healthy_since = self._last_sweep = None
                if not failing:
                    logger.warning("reaper paused: Redis failed or refused a write (%s: %s)", type(exc).__name__, exc)
                failing = True
            else:
                if failing:
                    logger.warning("reaper: Redis is back; takeovers resume after one lease")
                failing = False

    async def sweep(self) -> int:
        """One pass; the number of runs queued for takeover."""
        started = self._clock()
        await self._runs.writable()
        now = self.redis_ok_at = self._clock()
        late = self._last_sweep is not None and started - self._last_sweep > self._interval + self._stall
        if self._healthy_since is None or late or now - started > self._stall:
            self._healthy_since = now
        try:
            if now - self._healthy_since < self._lease:
                return 0  # give every holder a whole lease to renew on a healthy Redis first
            return await self._requeue_expired()
        finally:
            self._last_sweep = self._clock()

    async def _requeue_expired(self) -> int:
        requeued = skipped = 0
        leases = self._runs.leases
        while page := await leases.due(skipped, PAGE):
            for entry in page:
                try:
                    look = await self._runs.look(entry.session_id)
                except redis_errors.ResponseError:  # a broken record: skip it, the others still need us
                    logger.error("reaper: cannot requeue %s", _run_in(entry.session_id), exc_info=True)
                    skipped += 1
                    continue
                # An intent is done with once its run got its job: a lease has an entry of its own.
                again = look.outcome is Requeue.PUSHED or (look.outcome is Requeue.RENEWED and not entry.is_intent)
                await leases.settle(entry, look.look_again_at if again else None)
                if look.outcome is Requeue.REQUEUED:
                    requeued += 1
                    logger.warning("%s lost its worker; queued for takeover", _run_in(entry.session_id))
                elif look.pushed:  # its queuer died before pushing it, or arq ended the job unstarted
                    logger.warning("the queued %s had no job; queued it again", _run_in(entry.session_id))
                elif look.expired is not None and tracing.ON:  # the run ended here: its span is written here
                    _trace_expired(entry.session_id, look.expired, self._runs.keys.queue)
            if len(page) < PAGE:
                break
        return requeued


def _trace_expired(session_id: str, record: bytes, queue: str) -> None:
    """The span of a run that failed here, as its question expired unanswered (`queue`: its job's)."""
    run = decode_run(record)
    if run.error is not None:
        run_spans.write_run(run, session_id, RunFailed(run_id=run.run_id, error=run.error, usage=run.usage), queue)


def _run_in(lane: str) -> str:
    """The run of a lane the leases index names, as logs say it: a child's lane is no session id."""
    session_id = session_of(lane)
    if lane == session_id:
        return f"the run of session {session_id}"
    return f"child run {lane.rsplit(LANE_SEPARATOR, 1)[1]} of session {session_id}"
