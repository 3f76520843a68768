"""The worker process: an arq Worker that starts jobs the moment they are queued.

arq polls its queue every `poll_delay` (0.5 s by default), which a person waiting for a first token
would feel. The gateway's queueing script publishes a wake-up on `Keys.wake_channel`; this worker
listens for it and polls at once, and also as soon as one of its own runs finishes and frees a
slot. The timed poll stays as a fallback for a missed wake-up (reconnects, a full worker).
"""

import asyncio
import contextlib
import logging
import signal
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func
from redis import exceptions as redis_errors

from shared import jobs
from shared.keys import Keys
from shared.settings import Settings
from shared.store import SessionStore
from worker.providers import Providers
from worker.run import run_agent

logger = logging.getLogger(__name__)


class WakeableWorker(Worker):
    def __init__(self, *, wake_channel: str | None, idle_poll_seconds: float, **kwargs: Any) -> None:
        # poll_delay 0: the wait between polls happens in _poll_iteration, where a wake-up can cut it short.
        super().__init__(poll_delay=0, **kwargs)
        self._wake_channel = wake_channel
        self._idle_poll_seconds = idle_poll_seconds
        self._wake = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    async def _poll_iteration(self) -> None:
        if self._listener is None and self._wake_channel is not None:
            self._listener = asyncio.create_task(self._listen())
        if not self._wake.is_set():
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (arq's shutdown)
            # that lands as the wake-up fires.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._idle_poll_seconds):
                    await self._wake.wait()
        self._wake.clear()
        await super()._poll_iteration()

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        if self._wake_channel is not None:
            self._wake.set()  # a slot is free: take the next queued job now

    async def _listen(self) -> None:
        while True:
            try:
                async with self.pool.pubsub() as pubsub:
                    await pubsub.subscribe(str(self._wake_channel))
                    self._wake.set()  # anything queued while we were not listening
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._wake.set()
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
                logger.warning("wake-up listener lost Redis; retrying (the timed poll still runs)")
                await asyncio.sleep(1)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        # arq's close() gathers its job tasks without return_exceptions, so a cancelled one raises there
        # and the pool is never closed. Wait for them here instead.
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        await super().close()


async def _startup(ctx: dict[str, Any]) -> None:
    ctx["store"] = SessionStore(ctx["redis"], ctx["settings"])
    ctx.setdefault("providers", Providers(ctx["settings"]))


def create_worker(settings: Settings, **overrides: Any) -> WakeableWorker:
    keys = Keys(settings.key_prefix)
    options: dict[str, Any] = {
        "functions": [func(run_agent, name=jobs.RUN_JOB, max_tries=1)],
        "redis_settings": RedisSettings.from_dsn(str(settings.redis_url)),
        "queue_name": keys.queue,
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
        "on_startup": _startup,
    }
    options.update(overrides)
    return WakeableWorker(**options)
