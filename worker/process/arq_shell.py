"""arq in its role: it runs the worker process (signals, job tasks, aborts, heartbeats, close) and
defines the job layout an arq client reads; enqueue, claim and finish are tokentail's scripts. This
module is all of tokentail that reaches into arq: its two classes stand between `arq.worker.Worker`
and the worker (`TokentailWorker`, worker/process/main.py), and tests/unit/project/test_borrowed.py fails when the
installed arq's code they copy or override, or an attribute they use, changes.

**The batched pickup** (`BatchedPickup`): what a poll's jobs cost arq in round trips, in one. arq
0.28 claims each job of a poll with four round trips (WATCH, EXISTS, ZSCORE, MULTI/PSETEX/EXEC),
awaited one job after another; its `run_job` then reads the job and counts its try (one more) and
its `finish_job` is one more per job. Here a poll claims its jobs with one script
(`claim_jobs.lua`: each due job not in progress elsewhere is marked in progress, its try counted,
and it comes back with its payload), and the finishes made while one round trip is out go together
in the next (`finish_jobs.lua`, through a `Joiner`: shared/connections/joiner.py). What Redis holds is what arq's
own worker leaves, key by key (shared/store/scripts/pickup.py): a plain arq client or the `arq` CLI sees
the same job status, queue and in-progress keys, and the same results.

**The leases index**, with the queue apart from the sessions (shared/store/lease_index.py): what the
index needs around a run's start and end goes in these calls, not in round trips of its own. A claim
watches each run's session (`watch_ms`) in place of its queuer's intent; a run's start takes its job
out of the queue with the next claim or finish (`take_later`: a poll comes at least every
`idle_poll_seconds`, well within the job's in-progress mark of a lease); and the finish of a job
whose run ended drops its watch, unless written since (`ended`).

Slots: arq takes a semaphore slot (and counts the job) before each claim and gives it back when
the job was not claimed. Here a poll claims at most the slots free when it asks, and takes one for
each job claimed once the claim is back (slots only free up meanwhile), so a claim that fails takes
none. A claim takes at most `CLAIM_MOST` jobs; with slots left, the poll claims again at once.

**A claimed job's run** (`ClaimedJobRun.run_claimed`): arq 0.28's `Worker.run_job`, given what the
claim read. arq's `run_job(job_id, score)` first reads the job and counts its try (a round trip of
its own); the claim has done both, for all of a poll's jobs at once. From the job's payload on,
`run_claimed` is arq's body, unchanged but for its names: the same checks (expired, unreadable,
aborted before start, unknown function, too many tries), hooks (`on_job_start`, `on_job_end`,
`after_job_end`), timeout, retries (`Retry`, `RetryJob`, a cancelled job run again), aborts, log
lines (on arq's logger) and finish.

arq internals relied on (arq is pinned to 0.28.*; the pins: tests/unit/project/test_borrowed.py):
`Worker.run_job` (copied as `run_claimed`), `_poll_iteration` (replaced: the same steps, with
`claim_jobs` for the read and `start_jobs`), `finish_job` and `finish_failed_job` (their
arguments), `close`, `_release_sem_dec_counter_on_complete`, the attributes the classes use
(`job_counter`, `sem`, `max_jobs`, `tasks`, `job_tasks`, `aborting_tasks`, `queue_read_limit`,
`_queue_read_offset`, `allow_pick_jobs`, `in_progress_timeout_s`, `heart_beat`,
`_cancel_aborted_jobs`, ...), arq.constants' key prefixes, and the retry count's lifetime (88,400 s,
written in arq's run_job).
"""

import asyncio
import logging
from typing import Any

from arq import constants
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import args_to_string, ms_to_datetime, timestamp_ms, to_ms, truncate
from arq.worker import JobExecutionFailed, Retry, RetryJob, Worker

from tokentail.shared.connections.joiner import Joiner
from tokentail.shared.features.admission import Admission
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.pickup import (
    CLAIM_MOST,
    ArqKeys,
    ArqPrefixes,
    ClaimedJob,
    ClaimJobs,
    Finish,
    FinishJobs,
)
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.worker.metrics import LINE_WAIT

arq_log = logging.getLogger("arq.worker")  # a run's lines as arq's worker writes them

RETRY_TTL_SECONDS = 88_400  # how long arq's run_job keeps a job's retry count
_NO_RESULT = object()


class ClaimedJobRun(Worker):
    """An arq `Worker` that runs a job it claimed with its payload: `run_claimed`, not `run_job`."""

    async def run_claimed(self, claimed: ClaimedJob) -> None:  # noqa: C901 (arq's run_job as arq wrote it, to be read against it)
        """arq's `run_job`, given what the claim read: from here on, its body as arq 0.28 has it."""
        job_id, score, v, job_try, abort_job, *_ = claimed
        start_ms = timestamp_ms()
        function_name, enqueue_time_ms = "<unknown>", 0
        args: tuple[Any, ...] = ()
        kwargs: dict[Any, Any] = {}

        async def job_failed(exc: BaseException) -> None:
            self.jobs_failed += 1
            result_data_ = serialize_result(
                function=function_name,
                args=args,
                kwargs=kwargs,
                job_try=job_try,
                enqueue_time_ms=enqueue_time_ms,
                success=False,
                result=exc,
                start_ms=start_ms,
                finished_ms=timestamp_ms(),
                ref=f"{job_id}:{function_name}",
                serializer=self.job_serializer,
                queue_name=self.queue_name,
                job_id=job_id,
            )
            await asyncio.shield(self.finish_failed_job(job_id, result_data_))

        if not v:
            arq_log.warning("job %s expired", job_id)
            return await job_failed(JobExecutionFailed("job expired"))
        try:
            function_name, args, kwargs, enqueue_job_try, enqueue_time_ms = deserialize_job_raw(
                v, deserializer=self.job_deserializer
            )
        except SerializationError as e:
            arq_log.exception("deserializing job %s failed", job_id)
            return await job_failed(e)
        if abort_job:
            t = (timestamp_ms() - enqueue_time_ms) / 1000
            arq_log.info("%6.2fs ⊘ %s:%s aborted before start", t, job_id, function_name)
            return await job_failed(asyncio.CancelledError())
        try:
            function = self.functions[function_name]
        except KeyError:
            arq_log.warning("job %s, function %r not found", job_id, function_name)
            return await job_failed(JobExecutionFailed(f"function {function_name!r} not found"))

        if hasattr(function, "next_run"):  # a cron job
            ref = function_name
            keep_in_progress: float | None = constants.keep_cronjob_progress
        else:
            ref = f"{job_id}:{function_name}"
            keep_in_progress = None
        if enqueue_job_try and enqueue_job_try > job_try:
            job_try = enqueue_job_try
            await self.pool.setex(constants.retry_key_prefix + job_id, RETRY_TTL_SECONDS, str(job_try))
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            t = (timestamp_ms() - enqueue_time_ms) / 1000
            arq_log.warning("%6.2fs ! %s max retries %d exceeded", t, ref, max_tries)
            self.jobs_failed += 1
            result_data = serialize_result(
                function_name,
                args,
                kwargs,
                job_try,
                enqueue_time_ms,
                False,
                JobExecutionFailed(f"max {max_tries} retries exceeded"),
                start_ms,
                timestamp_ms(),
                ref,
                self.queue_name,
                job_id=job_id,
                serializer=self.job_serializer,
            )
            return await asyncio.shield(self.finish_failed_job(job_id, result_data))

        result: Any = _NO_RESULT
        exc_extra = None
        finish = False
        timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        incr_score: int | None = None
        enqueue_time = ms_to_datetime(enqueue_time_ms)
        ctx = {**self.ctx, "job_id": job_id, "job_try": job_try, "enqueue_time": enqueue_time, "score": score}
        if self.on_job_start:
            await self.on_job_start(ctx)

        start_ms = timestamp_ms()
        success = False
        try:
            s = args_to_string(args, kwargs)
            extra = f" try={job_try}" if job_try > 1 else ""
            if (start_ms - score) > 1200:
                extra += f" delayed={(start_ms - score) / 1000:0.2f}s"
            arq_log.info("%6.2fs → %s(%s)%s", (start_ms - enqueue_time_ms) / 1000, ref, s, extra)
            self.job_tasks[job_id] = task = self.loop.create_task(function.coroutine(ctx, *args, **kwargs))
            # run repr(result) and extra inside try/except as they can raise exceptions
            try:
                result = await asyncio.wait_for(task, timeout_s)
            except (Exception, asyncio.CancelledError) as e:
                exc_extra = getattr(e, "extra", None)
                if callable(exc_extra):
                    exc_extra = exc_extra()
                raise
            else:
                result_str = "" if result is None or not self.log_results else truncate(repr(result))
            finally:
                del self.job_tasks[job_id]
        except (Exception, asyncio.CancelledError) as e:
            finished_ms = timestamp_ms()
            t = (finished_ms - start_ms) / 1000
            if self.retry_jobs and isinstance(e, Retry):
                incr_score = e.defer_score
                arq_log.info("%6.2fs ↻ %s retrying job in %0.2fs", t, ref, (e.defer_score or 0) / 1000)
                if e.defer_score:
                    incr_score = e.defer_score + (timestamp_ms() - score)
                self.jobs_retried += 1
            elif job_id in self.aborting_tasks and isinstance(e, asyncio.CancelledError):
                arq_log.info("%6.2fs ⊘ %s aborted", t, ref)
                result = e
                finish = True
                self.aborting_tasks.remove(job_id)
                self.jobs_failed += 1
            elif self.retry_jobs and isinstance(e, (asyncio.CancelledError, RetryJob)):
                arq_log.info("%6.2fs ↻ %s cancelled, will be run again", t, ref)
                self.jobs_retried += 1
            else:
                arq_log.exception(
                    "%6.2fs ! %s failed, %s: %s", t, ref, e.__class__.__name__, e, extra={"extra": exc_extra}
                )
                result = e
                finish = True
                self.jobs_failed += 1
        else:
            success = True
            finished_ms = timestamp_ms()
            arq_log.info("%6.2fs ← %s ● %s", (finished_ms - start_ms) / 1000, ref, result_str)
            finish = True
            self.jobs_complete += 1

        keep_result_forever = (
            self.keep_result_forever if function.keep_result_forever is None else function.keep_result_forever
        )
        result_timeout_s = self.keep_result_s if function.keep_result_s is None else function.keep_result_s
        result_data = None
        if result is not _NO_RESULT and (keep_result_forever or result_timeout_s > 0):
            result_data = serialize_result(
                function_name,
                args,
                kwargs,
                job_try,
                enqueue_time_ms,
                success,
                result,
                start_ms,
                finished_ms,
                ref,
                self.queue_name,
                job_id=job_id,
                serializer=self.job_serializer,
            )
        if self.on_job_end:
            await self.on_job_end(ctx)
        await asyncio.shield(
            self.finish_job(
                job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score, keep_in_progress
            )
        )
        if self.after_job_end:
            await self.after_job_end(ctx)


FINISH_MOST = 256  # the most finishes in one script call (Redis serves nobody else meanwhile)


class BatchedPickup(ClaimedJobRun):
    """An arq `Worker` whose poll claims its jobs in one script and whose finishes are joined."""

    def __init__(self, *, admission: Admission | None = None, watch_ms: int = 0, **kwargs: Any) -> None:
        """`admission`: the deployment's (shared/features/admission.py); by default, no caps and equal weights,
        under the prefix of the keys of the queue `queue_name`. `watch_ms`: with the queue apart from
        the sessions, a lease: a claimed run's session is watched in the leases index that long."""
        super().__init__(**kwargs)
        self.admission = admission or Admission(Keys(self.queue_name.removesuffix(":queue")))
        self._arq_keys = ArqKeys(self.queue_name, constants.abort_jobs_ss, self.admission.keys.lease_checks)
        self._watch_ms = watch_ms
        # Claimed job -> the watch its claim wrote (its session, and its score), until its finish.
        self._watches: dict[str, tuple[str, str]] = {}
        self._ended: set[str] = set()  # claimed jobs whose runs ended: their watches go with their finishes
        self._takes: list[str] = []  # jobs whose runs started: they leave the queue with the next call
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
        if self._takes:  # no claim took them (a full worker): in a call of their own
            await self._take_now()
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
            jobs = await self.claim(slots, count)
            claimed_ms = timestamp_ms()
            for job in jobs:
                if job.lined_at is not None:
                    LINE_WAIT.observe(max(0, claimed_ms - job.lined_at) / 1000)
                await self.sem.acquire()  # never waits: the slot was free when the claim asked
                self.job_counter += 1
                task = self.loop.create_task(self.run_claimed(job))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job.job_id] = task
            if len(jobs) < slots:  # nothing more due, or the rest in progress elsewhere
                self.short_of_slots = False
                return
            count -= len(jobs)
        # Every slot taken (any freed during a claim went to the next claim): more may be due.
        self.short_of_slots = self.job_counter >= self.max_jobs

    async def claim(self, most: int, count: int) -> list[ClaimedJob]:
        """Claim up to `most` due jobs, looking at most at `count` ids (claim_jobs.lua); the jobs taken
        since the last call leave the queue with it."""
        admission = self.admission
        taken, self._takes = self._takes, []
        try:
            claim = await self.scripts(
                ClaimJobs(
                    self._arq_keys,
                    self._prefixes,
                    admission.claim_args(),
                    timestamp_ms(),
                    self._queue_read_offset,
                    count,
                    most,
                    int(self.in_progress_timeout_s * 1000),
                    RETRY_TTL_SECONDS,
                    int(self.allow_abort_jobs),
                    self._watch_ms,
                    admission.flat_caps(),
                    admission.flat_weights(),
                    taken,
                )
            )
        except BaseException:
            self._takes[:0] = taken  # with the next call
            raise
        for job in claim.jobs:
            if job.watched is not None and job.watched_at is not None:
                self._watches[job.job_id] = (job.watched, job.watched_at)
        return claim.jobs

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
        keys = self.admission.keys
        taken, self._takes = self._takes, []
        dropped: list[str] = []  # the watches of the runs that ended: session, score
        for finish in finishes:
            watch = self._watches.pop(finish.job_id, None)
            if finish.job_id in self._ended:
                self._ended.discard(finish.job_id)
                dropped += watch or ()
        admission, wake = keys.admission, keys.wake_channel
        finishing = FinishJobs.of(self._arq_keys, self._prefixes, admission, wake, finishes, taken, dropped)
        try:
            await self.scripts(finishing)
        except BaseException:
            self._takes[:0] = taken  # (a watch not dropped: a reaper's look drops it)
            raise
        return [None] * len(finishes)

    async def _take_now(self) -> None:
        taken, self._takes = self._takes, []
        try:
            await self.pool.zrem(self.queue_name, *taken)
        except BaseException:
            self._takes[:0] = taken
            raise

    # What the leases index asks of the pickup (shared/store/lease_index.py's Pickup).
    def watched(self, job_id: str) -> bool:
        return job_id in self._watches

    def take_later(self, job_id: str) -> None:
        self._takes.append(job_id)

    def ended(self, job_id: str) -> None:
        if job_id in self._watches:
            self._ended.add(job_id)

    async def close(self) -> None:
        await self._finishes.idle()  # the pool closes next
        await super().close()
