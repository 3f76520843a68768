"""Which worker processes are alive and what each does, for the operator console.

Every worker process writes a heartbeat every BEAT_SECONDS into one hash beside the queue (`Keys.workers`):
its id, host, pid, version, slots, the runs it holds now, and the last minutes of two of its own counters
sampled at each beat (text chunks streamed, and the count and sum of its runs' times to first token). A
gateway reads the hash (one key, as many fields as workers) and derives the deployment's tokens per
second and first-token latency from the samples' differences, so no token pays for the charts. A beat
older than ALIVE_SECONDS marks its worker dead (killed, or cut off from Redis); one older than
FORGET_SECONDS is dropped by the gateway that reads it. A worker that stops removes its own.
"""

import functools
import json
import logging
import os
import secrets
import socket
import time
from importlib import metadata
from typing import NamedTuple

from pydantic import BaseModel, Field

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.store.keys import Keys

logger = logging.getLogger(__name__)

BEAT_SECONDS = 2.0
ALIVE_SECONDS = 10.0  # four beats missed
FORGET_SECONDS = 600.0
SAMPLES_KEPT = 150  # five minutes of beats
STEP_SECONDS = 5  # the charts' resolution


@functools.cache
def process_id() -> str:
    """This process's id, as a worker or a gateway: its host and pid, and a few random characters (a
    pid is reused, and is 1 in every container)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


@functools.cache
def version() -> str:
    try:
        return metadata.version("tokentail")
    except metadata.PackageNotFoundError:  # pragma: no cover (run from a checkout not installed)
        return "unknown"


class RunRef(BaseModel):
    session_id: str
    run_id: str


class Sample(NamedTuple):
    at: float  # epoch seconds
    tokens: float  # text chunks streamed since the process started
    first_tokens: float  # runs whose first token came
    first_token_seconds: float  # the sum of their times to it


class WorkerBeat(BaseModel):
    worker: str
    host: str
    pid: int
    version: str
    started_at: float
    heartbeat_at: float
    slots: int  # runs it streams at once, at most
    runs: list[RunRef] = Field(default_factory=list)
    samples: list[Sample] = Field(default_factory=list, exclude=True)  # oldest first

    def alive(self, now: float) -> bool:
        return now - self.heartbeat_at < ALIVE_SECONDS


class Point(NamedTuple):
    at: float
    tokens_per_second: float
    first_token_ms: float | None  # the mean of the step's first tokens; None: none came


class WorkerRegistry:
    def __init__(self, queue: AnyRedis, keys: Keys) -> None:
        self._redis = queue
        self._key = keys.workers

    async def beat(self, beat: WorkerBeat) -> None:
        payload = {**beat.model_dump(), "samples": beat.samples}
        await self._redis.hset(self._key, beat.worker, json.dumps(payload, separators=(",", ":")))  # type: ignore[misc]

    async def leave(self, worker: str) -> None:
        await self._redis.hdel(self._key, worker)  # type: ignore[misc]

    async def read(self, now: float | None = None) -> list[WorkerBeat]:
        """The workers that beat within FORGET_SECONDS (alive or not), oldest first; older ones are dropped."""
        now = time.time() if now is None else now
        beats, forgotten = [], []
        for field, value in (await self._redis.hgetall(self._key)).items():  # type: ignore[misc]
            try:
                raw = json.loads(value)
                beat = WorkerBeat.model_validate({**raw, "samples": [Sample(*s) for s in raw.get("samples", [])]})
            except (ValueError, TypeError):
                logger.warning("a worker's heartbeat is unreadable; dropped: %r", field)
                forgotten.append(field)
                continue
            if now - beat.heartbeat_at > FORGET_SECONDS:
                forgotten.append(field)
            else:
                beats.append(beat)
        if forgotten:
            await self._redis.hdel(self._key, *forgotten)  # type: ignore[misc]
        return sorted(beats, key=lambda beat: beat.started_at)


def throughput(beats: list[WorkerBeat], minutes: float, now: float | None = None) -> list[Point]:
    """The deployment's tokens per second and mean time to first token per STEP_SECONDS over the last
    `minutes` (whole steps), oldest first: each worker's counters' growth between its samples, summed over
    the workers."""
    now = time.time() if now is None else now
    last_step = int(now // STEP_SECONDS) - 1  # the last whole step
    steps = max(1, int(minutes * 60 // STEP_SECONDS))
    first = last_step - steps + 1
    tokens = [0.0] * steps
    firsts = [0.0] * steps
    first_seconds = [0.0] * steps
    for beat in beats:
        for before, after in zip(beat.samples, beat.samples[1:], strict=False):
            step = int(after.at // STEP_SECONDS) - first
            if not 0 <= step < steps or after.tokens < before.tokens:
                continue
            tokens[step] += after.tokens - before.tokens
            firsts[step] += after.first_tokens - before.first_tokens
            first_seconds[step] += after.first_token_seconds - before.first_token_seconds
    return [
        Point(
            float((first + i) * STEP_SECONDS),
            tokens[i] / STEP_SECONDS,
            first_seconds[i] / firsts[i] * 1000 if firsts[i] > 0 else None,
        )
        for i in range(steps)
    ]
