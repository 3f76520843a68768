"""The worker process: an arq Worker that starts jobs the moment they are queued, cancels runs on
request, and takes over the runs of workers that died.

- **Wake-ups.** arq polls its queue every `poll_delay` (0.5 s by default), which a person waiting
  for a first token would feel. Queueing publishes a wake-up on `Keys.wake_channel`; this worker
  polls at once, and also as soon as one of its own runs finishes and frees a slot that a due job
  waits for (its last poll left jobs for want of one: `short_of_slots`). The timed poll
  stays as a fallback for a missed wake-up (reconnects, a full worker).
- **Cancels and steers** arrive on `Keys.cancel_channel` and `Keys.steer_channel` (and, as a
  fallback, with the next lease renewal), published by the sessions' scripts: with the queue on a
  Redis of its own, this worker listens for them on the sessions' Redis (one node of a cluster:
  Redis broadcasts classic pub/sub to all).
- **Reaper** (`worker/process/reaper.py`). Every `reap_interval_seconds`, each worker looks for runs whose
  lease ran out (their worker was killed, or lost its host) and queues them again; the worker that
  picks one up takes it over as the next attempt. arq alone would wait job_timeout + 10 s, and then
  only retry blindly. Each pass that reaches Redis also tells the probe server (`worker/process/probe.py`)
  the worker is ready.
- **Webhooks** (`worker/process/webhook_delivery.py`), when the operator allows any: each worker also posts the
  webhook events its sessions keep, retrying those a receiver does not take.
- **Archiving** (`worker/process/archiver.py`), with an archive configured: each worker also copies finished
  (and long-running) sessions to PostgreSQL, so that Redis may forget them.
- **Short in-progress marks.** arq marks a job it picks up as in progress for its whole timeout
  (here 31 minutes), so a worker killed between picking a job and starting its run would strand the
  run that long. Here the mark lasts one lease: `start_run.lua` takes a started run's job out of the
  queue (with the queue apart, the worker's next call there: worker/process/arq_shell.py), so only a job
  whose worker died before starting it is picked again when the mark lapses.
- **Redis errors never end the worker.** A poll that fails (Redis unreachable, out of memory,
  read-only after a failover, busy, loading) is logged and retried with a growing pause, cut short
  when the wake-up listener subscribes again (Redis is back, a failover is over); arq's own
  loop would let the exception end the process. Nor do they shrink it: a job claim that fails takes
  no slot.
- **Pickup** (`worker/process/arq_shell.py`). A poll claims its jobs in one script, which also reads them, and
  the jobs' finishes that wait for the same round trip go together: arq's keys and their meaning
  are kept, so a plain arq client sees what it saw.
"""

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from arq.connections import RedisSettings
from arq.worker import func
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from tokentail.shared.connections.redis_clients import close_sentinels, redis_client, sessions_client
from tokentail.shared.features import agent_catalog
from tokentail.shared.features.admission import Admission, SlotAudit
from tokentail.shared.features.workers import WorkerRegistry
from tokentail.shared.plumbing.redis_urls import sentinel_setup
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store import jobs
from tokentail.shared.store.archive import open_archive
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore
from tokentail.worker import metrics
from tokentail.worker.process.archiver import Archiver
from tokentail.worker.process.arq_shell import BatchedPickup
from tokentail.worker.process.beacon import Beacon
from tokentail.worker.process.probe import ProbeServer, probe_app
from tokentail.worker.process.reaper import Reaper
from tokentail.worker.process.watchdog import LoopWatchdog
from tokentail.worker.process.webhook_delivery import WebhookDeliverer
from tokentail.worker.providers import Providers
from tokentail.worker.run.agents import agent_infos
from tokentail.worker.run.job import run_agent
from tokentail.worker.running import RunningRuns
from tokentail.worker.writes.appends import AppendTicks
from tokentail.worker.writes.run_writes import RunWrites

logger = logging.getLogger(__name__)

MAX_POLL_BACKOFF_SECONDS = 5.0


class TokentailWorker(BatchedPickup):
    def __init__(
        self,
        *,
        settings: Settings,
        wake_channel: str | None,
        idle_poll_seconds: float,
        probe_address: tuple[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        # poll_delay 0: the wait between polls happens in _poll_iteration, where a wake-up can cut it short.
        super().__init__(poll_delay=0, **kwargs)
        self.in_progress_timeout_s = settings.lease_ms / 1000  # see "Short in-progress marks" above
        self._settings = settings
        self._keys = Keys(settings.key_prefix)
        self._wake_channel = wake_channel
        self._idle_poll_seconds = idle_poll_seconds
        self._wake = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._poll_failures = 0
        # With the queue apart, cancels are published on the sessions' Redis (a node of it, if a cluster).
        self._cancels = redis_client(settings.redis_url, 4, wait=10) if settings.split_queue else None
        self.running = RunningRuns()
        self.ctx["running"] = self.running
        self.reaper: Reaper | None = None
        self._watchdog: LoopWatchdog | None = None
        self._probe: ProbeServer | None = None
        self._probe_task: asyncio.Task[None] | None = None
        if probe_address is not None:
            ready_within = max(10.0, 3 * settings.reap_interval_seconds)
            self._probe = ProbeServer(probe_app(self._redis_ok_at, ready_within), *probe_address)

    @property
    def probe_port(self) -> int | None:
        return self._probe.port if self._probe is not None else None

    def _redis_ok_at(self) -> float:
        return self.reaper.redis_ok_at if self.reaper is not None else time.monotonic()

    async def _poll_iteration(self) -> None:
        if not self._background:
            settings = self._settings
            self.reaper = Reaper(self.ctx["runs"], settings.reap_interval_seconds, settings.lease_ms / 1000)
            self.ctx["runs"].leases.pickup = self  # its claims and finishes keep the leases index
            wake = [self._wake_channel] if self._wake_channel else []
            told = [self._keys.cancel_channel, self._keys.steer_channel]
            if self._cancels is None:
                listeners = [self._listen(self.pool, [*told, *wake])]
            else:
                listeners = [self._listen(self.pool, wake), self._listen(self._cancels, told)]
            self._background = [*map(asyncio.create_task, listeners), asyncio.create_task(self.reaper.run_forever())]
            self._watchdog = LoopWatchdog(asyncio.get_running_loop(), self.running, settings.blocked_loop_seconds)
            self._watchdog.start()
            if "webhooks" in self.ctx:
                self._background.append(asyncio.create_task(self.ctx["webhooks"].run_forever()))
            if "archiver" in self.ctx:
                self._background.append(asyncio.create_task(self.ctx["archiver"].run_forever()))
            sessions = self.ctx.get("sessions_redis", self.pool)
            audit = SlotAudit(self.pool, sessions, self.admission, settings.lease_ms / 1000)
            self._background.append(asyncio.create_task(audit.run_forever(metrics.show_tenant_runs)))
            beacon = Beacon(WorkerRegistry(self.pool, self._keys), self.running, settings.worker_concurrency)
            self._background.append(asyncio.create_task(beacon.run_forever()))
            if self._probe is not None:
                self._probe_task = asyncio.create_task(self._probe.serve())
        if not self._wake.is_set():
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (arq's shutdown)
            # that lands as the wake-up fires.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._idle_poll_seconds):
                    await self._wake.wait()
        self._wake.clear()
        try:
            await super()._poll_iteration()
        except (redis_errors.RedisError, OSError) as exc:
            # Also what a job's task raised (arq re-raises it here): a job whose end could not be
            # recorded is picked again once its short in-progress mark lapses.
            self._poll_failures += 1
            pause = min(MAX_POLL_BACKOFF_SECONDS, 0.25 * 2**self._poll_failures)
            if self._poll_failures == 1:
                logger.warning("queue poll failed (%s: %s); retrying", type(exc).__name__, exc)
            # A wake-up ends the pause: a listener that subscribed again (Redis is back, a failover is
            # over) or a slot that freed.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._wake.wait()
        else:
            if self._poll_failures:
                logger.warning("queue poll works again after %d failures", self._poll_failures)
            self._poll_failures = 0

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        if self._wake_channel is not None and self.short_of_slots:
            # A slot is free and the last poll left jobs for want of one: take the next now. (A job
            # queued meanwhile wakes the worker itself.)
            self._wake.set()

    async def _listen(self, redis: Redis, channels: list[str]) -> None:
        if not channels:
            return
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(*channels)
                    self._wake.set()  # anything queued while we were not listening
                    async for message in pubsub.listen():
                        if message["type"] == "subscribe" and message["channel"].decode() == self._keys.steer_channel:
                            self.running.hearing()  # Redis subscribed it: each steer from now on is told
                        if message["type"] != "message":
                            continue
                        channel = message["channel"].decode()
                        if channel == self._keys.cancel_channel:
                            self.running.cancel(message["data"].decode())
                        elif channel == self._keys.steer_channel:
                            self.running.steered(message["data"].decode())
                        else:
                            self._wake.set()
            except (redis_errors.RedisError, OSError):
                logger.warning("pub/sub listener lost Redis; retrying (the timed poll and lease renewals still run)")
                await asyncio.sleep(1)
            finally:
                self.running.deaf()

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._probe is not None and self._probe_task is not None:
            self._probe.should_exit = True  # it closes its sockets and returns within a tick
            await asyncio.wait([self._probe_task], timeout=5)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._cancels is not None:
            await self._cancels.aclose()
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        # arq's close() gathers its job tasks without return_exceptions, so a cancelled one raises there
        # and the pool is never closed; and it closes the pool without waiting for its main task,
        # which may still hold a pipeline of the pool. Wait for all of them here instead.
        await asyncio.gather(*self.tasks.values(), *filter(None, [self.main_task]), return_exceptions=True)
        self.tasks.clear()
        pool = self._pool
        await super().close()
        if pool is not None:
            await close_sentinels(pool)  # arq closes its pool, not its client's connections to the Sentinels


async def _startup(ctx: dict[str, Any]) -> None:
    """arq's own client (`ctx["redis"]`) is the queue's; the sessions' may be another Redis."""
    settings: Settings = ctx["settings"]
    queue = ctx["redis"]
    sessions = queue
    if settings.split_queue:
        sessions = ctx["sessions_redis"] = sessions_client(
            settings, max_connections=settings.worker_concurrency + 8, wait=10, socket_keepalive=True
        )
    ctx["store"] = SessionStore(sessions, settings)
    ctx["appends"] = AppendTicks(sessions, settings)  # every run's per-token appends, a tick at a time
    ctx["runs"] = RunWrites(sessions, settings, queue=queue if settings.split_queue else None)
    ctx.setdefault("providers", Providers(settings))
    try:
        await agent_catalog.publish(sessions, Keys(settings.key_prefix), agent_infos(settings))
    except redis_errors.RedisError as exc:  # a full Redis: the gateways show the agents' defaults meanwhile
        logger.warning("could not publish the agents' descriptions: %s", exc)
    if settings.webhook_allowed_urls:
        ctx["webhooks"] = WebhookDeliverer(sessions, ctx["runs"].webhooks, settings)
    if (archive := await open_archive(settings)) is not None:
        ctx["archive"] = archive
        ctx["archiver"] = Archiver(sessions, archive, settings)


async def _shutdown(ctx: dict[str, Any]) -> None:
    if "webhooks" in ctx:
        await ctx["webhooks"].close()
    if "archive" in ctx:
        await ctx["archive"].close()
    if "sessions_redis" in ctx:
        await ctx["sessions_redis"].aclose()


def arq_redis_settings(url: str) -> RedisSettings:
    """arq's settings for the queue's Redis: one server's URL, or a Sentinel setup's, whose primary
    arq's client finds through the Sentinels (and finds again after a failover)."""
    setup = sentinel_setup(url)
    if setup is None:
        return RedisSettings.from_dsn(url)
    return RedisSettings(
        host=list(setup.sentinels),
        sentinel=True,
        sentinel_master=setup.service,
        database=setup.db,
        username=setup.username,
        password=setup.password,
    )


def create_worker(settings: Settings, **overrides: Any) -> TokentailWorker:
    keys = Keys(settings.key_prefix)
    options: dict[str, Any] = {
        # arq re-runs a job cancelled by a stopping worker: let it, start_run.lua makes that harmless
        # (and it covers a stop between arq's pickup and start_run, before any lease exists).
        "functions": [func(run_agent, name=jobs.RUN_JOB, max_tries=1000)],
        "redis_settings": arq_redis_settings(settings.queue_redis_url or settings.redis_url),
        "queue_name": keys.queue,
        "settings": settings,
        "wake_channel": keys.wake_channel if settings.worker_wakeups else None,
        "idle_poll_seconds": settings.poll_interval_seconds,
        "max_jobs": settings.worker_concurrency,
        # The run enforces its own timeout and always writes a terminal event; arq's is a backstop.
        "job_timeout": settings.run_timeout_seconds + 60,
        "keep_result": 0,  # run records live in the session; arq results would only block job ids
        "job_serializer": jobs.serialize,
        "job_deserializer": jobs.deserialize,
        "health_check_interval": 10,
        "ctx": {"settings": settings},
        "admission": Admission.of(settings),
        "watch_ms": settings.lease_ms if settings.split_queue else 0,  # (on one Redis, start_run.lua watches)
        "on_startup": _startup,
        "on_shutdown": _shutdown,
    }
    options.update(overrides)
    return TokentailWorker(**options)
