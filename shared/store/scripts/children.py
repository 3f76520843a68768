"""The contracts of the scripts that start a run's children and wait for them (docs/subagents.md)."""

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from tokentail.shared.store.scripts.contract import Effect, KeyGroup, Script, only_if, shared_queue
from tokentail.shared.store.scripts.reply import Reply
from tokentail.shared.store.scripts.runs import RunKeys, SessionArgs


@dataclass(slots=True)
class SpawnKeys(KeyGroup):
    """The parent's lane's keys a spawn writes, the child's lane's meta, and the queue's."""

    meta: str
    runs: str
    events: str
    lease: str
    child: str  # the child's lane's meta
    queue: str | None = only_if(shared_queue)
    index: str | None = only_if(shared_queue)


class Spawned(StrEnum):
    STARTED = "started"  # recorded and queued
    AGAIN = "again"  # spawned before (by an earlier attempt of the parent): its `status`
    FULL = "full"  # as many children going as the parent may have at once: it waits for one to end
    TOO_MANY = "too_many"  # the parent has as many children as a run may start
    CANCEL = "cancel"  # the parent's cancel is pending


class SpawnReply(NamedTuple):
    outcome: Spawned
    seq: int | None = None  # of `run.spawned`
    status: bytes | None = None  # AGAIN: the child's


@dataclass(slots=True)
class Spawn(Script[SpawnReply]):
    SOURCE = "spawn"
    EFFECTS = Effect.ACKNOWLEDGED | Effect.QUEUES_JOB
    k: SpawnKeys
    s: SessionArgs  # the child's lane's
    run_id: str  # the parent's
    lease_token: str
    expect: int
    child_id: str
    record: str  # the child's record (shared/store/scripts/runs.py `encode_run`)
    spawned: str  # the data of its `run.spawned`
    most_children: int
    most_concurrent: int

    REPLY = Reply(SpawnReply, started=("seq",), again=("status",), full=(), too_many=(), cancel=())


class Awaited(StrEnum):
    WAITING = "waiting"  # the run waits without a worker; its children's ends queue it again
    QUEUED = "queued"  # they ended already: queued again at once
    CANCEL = "cancel"  # a cancel is pending: end the run cancelled instead


class AwaitReply(NamedTuple):
    outcome: Awaited


@dataclass(slots=True)
class AwaitChildren(Script[AwaitReply]):
    SOURCE = "await_children"
    EFFECTS = Effect.ACKNOWLEDGED | Effect.QUEUES_JOB
    k: RunKeys
    s: SessionArgs
    run_id: str
    lease_token: str
    expect: int
    wake_on_first: str  # '1': queued again when the first of `children` ends
    job_suffix: str
    children: list[str]

    REPLY = Reply(AwaitReply, waiting=(), queued=(), cancel=())
