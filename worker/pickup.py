"""arq's pickup and finish, batched: what a poll's jobs cost arq in round trips, in one.

arq 0.28 claims each job of a poll with four round trips (WATCH, EXISTS, ZSCORE, MULTI/PSETEX/EXEC),
awaited one job after another; its `run_job` then reads the job and counts its try (one more) and
its `finish_job` is one more per job. Here a poll claims its jobs with one script
(`claim_jobs.lua`: each due job not in progress elsewhere is marked in progress, its try counted,
and it comes back with its payload), and the finishes made while one round trip is out go together
in the next (`finish_jobs.lua`, through a `Joiner`: shared/joiner.py). What Redis holds is what arq's own worker
leaves, key by key (shared/scripts/pickup.py): a plain arq client or the `arq` CLI sees the same
job status, queue and in-progress keys, and the same results.

Slots: arq takes a semaphore slot (and counts the job) before each claim and gives it back when
the job was not claimed. Here a poll claims at most the slots free when it asks, and takes one for
each job claimed once the claim is back (slots only free up meanwhile), so a claim that fails takes
none. A claim takes at most `CLAIM_MOST` jobs; with slots left, the poll claims again at once.

arq internals relied on (arq is pinned to 0.28.*): `Worker._poll_iteration` (replaced: the same
steps, with `claim_jobs` for the read and `start_jobs`), `run_job` (replaced by `run_claimed`:
worker/claimed_job.py), `finish_job` and `finish_failed_job` (their arguments),
the attributes `job_counter`, `sem`, `max_jobs`, `tasks`, `job_tasks`, `aborting_tasks`,
`queue_read_limit`, `_queue_read_offset`, `allow_pick_jobs`, `in_progress_timeout_s`,
`_release_sem_dec_counter_on_complete`, `heart_beat`, `_cancel_aborted_jobs`, arq.constants' key
prefixes, and the retry count's lifetime (88,400 s, written in arq's run_job).
"""

from typing import Any

from arq import constants
from arq.utils import timestamp_ms, to_ms

from tokentail.shared.joiner import Joiner
from tokentail.shared.scripts.contract import Topology
from tokentail.shared.scripts.pickup import CLAIM_MOST, ArqKeys, ArqPrefixes, ClaimJobs, Finish, FinishJobs
from tokentail.shared.scripts.runner import ScriptRunner
from tokentail.worker.claimed_job import RETRY_TTL_SECONDS, ClaimedJobRun

FINISH_MOST = 256  # the most finishes in one script call (Redis serves nobody else meanwhile)


class BatchedPickup(ClaimedJobRun):
    """An arq `Worker` whose poll claims its jobs in one script and whose finishes are joined."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._arq_keys = ArqKeys(self.queue_name, constants.abort_jobs_ss)
        self._prefixes = ArqPrefixes(
            constants.in_progress_key_prefix,
            constants.job_key_prefix,
            constants.retry_key_prefix,
            constants.result_key_prefix,
        )
        self._scripts: ScriptRunner | None = None  # on arq's pool, made by main()
        self._finishes: Joiner[Finish, None] = Joiner(self._finish_jobs, FINISH_MOST)
        # The last poll left due jobs behind for want of a slot: a slot that frees should poll again.
        self.short_of_slots = False

    @property
    def scripts(self) -> ScriptRunner:
        if self._scripts is None:
            # The queue's Redis is one server (or a Sentinel's primary): no topology changes these scripts.
            self._scripts = ScriptRunner(self.pool, Topology())
        return self._scripts

    async def _poll_iteration(self) -> None:
        count = self.queue_read_limit
        if self.burst and self.max_burst_jobs >= 0:
            remaining = self.max_burst_jobs - self._jobs_started()
            if remaining < 1:
                return
            count = min(remaining, count)
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            await self.claim_jobs(count)
        elif self.allow_pick_jobs:
            self.short_of_slots = True
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # what run_claimed raised, raised here as arq's poll does
        await self.heart_beat()

    async def claim_jobs(self, count: int) -> None:
        """Claim and start due jobs, as many as the free slots, looking at most at `count` ids."""
        while (slots := min(self.max_jobs - self.job_counter, CLAIM_MOST, count)) > 0:
            claim = await self.scripts(
                ClaimJobs(
                    self._arq_keys,
                    self._prefixes,
                    timestamp_ms(),
                    self._queue_read_offset,
                    count,
                    slots,
                    int(self.in_progress_timeout_s * 1000),
                    RETRY_TTL_SECONDS,
                    int(self.allow_abort_jobs),
                )
            )
            for job in claim.jobs:
                await self.sem.acquire()  # never waits: the slot was free when the claim asked
                self.job_counter += 1
                task = self.loop.create_task(self.run_claimed(job))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job.job_id] = task
            if len(claim.jobs) < slots:  # nothing more due, or the rest in progress elsewhere
                self.short_of_slots = False
                return
            count -= len(claim.jobs)
        # Every slot taken (any freed during a claim went to the next claim): more may be due.
        self.short_of_slots = self.job_counter >= self.max_jobs

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        result_ms = to_ms(None if keep_result_forever else result_timeout_s)
        await self._finishes.submit(
            Finish(
                job_id,
                finish,
                (result_data or "") if finish else "",
                "" if result_ms is None else result_ms,
                incr_score or "",
                "" if keep_in_progress is None else to_ms(keep_in_progress),
            )
        )

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        # arq asks Redis to keep a failed job's result for ever with PX 0, which Redis refuses: kept for ever here.
        kept = result_data is not None and (self.keep_result_forever or self.keep_result_s > 0)
        result_ms = "" if self.keep_result_forever else to_ms(self.keep_result_s)
        await self._finishes.submit(Finish(job_id, True, (result_data or "") if kept else "", result_ms))

    async def _finish_jobs(self, finishes: list[Finish]) -> list[None]:
        await self.scripts(FinishJobs.of(self._arq_keys, self._prefixes, finishes))
        return [None] * len(finishes)

    async def close(self) -> None:
        await self._finishes.idle()  # the pool closes next
        await super().close()
