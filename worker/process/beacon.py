"""The worker's heartbeat for the operator console (shared/features/workers.py): every BEAT_SECONDS,
this process's runs and a sample of its own counters (Prometheus', which the runs keep anyway)."""

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque

from prometheus_client import Metric
from redis import exceptions as redis_errors

from tokentail.shared.features.workers import (
    BEAT_SECONDS,
    SAMPLES_KEPT,
    RunRef,
    Sample,
    WorkerBeat,
    WorkerRegistry,
    process_id,
    version,
)
from tokentail.worker import metrics
from tokentail.worker.running import RunningRuns

logger = logging.getLogger(__name__)


def _total(families: list[Metric], suffix: str) -> float:
    return sum(sample.value for family in families for sample in family.samples if sample.name.endswith(suffix))


def sample(at: float) -> Sample:
    first_tokens = list(metrics.TIME_TO_FIRST_TOKEN.collect())
    return Sample(
        at,
        _total(list(metrics.TOKENS.collect()), "_total"),
        _total(first_tokens, "_count"),
        _total(first_tokens, "_sum"),
    )


class Beacon:
    def __init__(self, registry: WorkerRegistry, running: RunningRuns, slots: int) -> None:
        self._registry = registry
        self._running = running
        self._samples: deque[Sample] = deque(maxlen=SAMPLES_KEPT)
        self._beat = WorkerBeat(
            worker=process_id(),
            host=socket.gethostname(),
            pid=os.getpid(),
            version=version(),
            started_at=time.time(),
            heartbeat_at=time.time(),
            slots=slots,
        )

    async def beat(self) -> None:
        now = time.time()
        self._samples.append(sample(now))
        self._beat.heartbeat_at = now
        self._beat.runs = [RunRef(session_id=sid, run_id=rid) for sid, rid in self._running.listed()]
        self._beat.samples = list(self._samples)
        await self._registry.beat(self._beat)

    async def run_forever(self) -> None:
        failing = False
        try:
            while True:
                try:
                    await self.beat()
                    failing = False
                except (redis_errors.RedisError, OSError) as exc:
                    if not failing:
                        logger.warning("could not write the worker's heartbeat (%s); retrying", exc)
                    failing = True
                await asyncio.sleep(BEAT_SECONDS)
        finally:
            # A worker that stops says so at once (a killed one stops beating, and shows dead soon).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await self._registry.leave(self._beat.worker)
