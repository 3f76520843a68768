"""The contracts of the scripts of the checks indexes and of those who work through them.

A checks index is a sorted set of sessions to look at, and when (ms): the leases index (reapers,
shared/store/lease_index.py), the webhooks index (deliverers, shared/store/webhook_index.py) and the archive
index (archivers, worker/process/archiver.py). A looker claims or pages the due entries, does its work at
each session (pushes the job an outbox held, drops a delivered webhook event, records how far the
archive got) and settles the entry, unless it was written meanwhile.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from tokentail.shared.store.jobs import JOB_TTL_MS, RUN_JOB
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.scripts.contract import ArgGroup, Effect, KeyGroup, Script
from tokentail.shared.store.scripts.reply import Reply, text_of


@dataclass(slots=True)
class IndexKey(KeyGroup):
    index: str


class Claimed(NamedTuple):
    score: str  # the claim's, as Redis writes it: an entry is settled only if it still reads so
    members: list[str]


@dataclass(slots=True)
class ClaimChecks(Script[Claimed]):
    """Claim the due entries, up to `count`: each moves `claim_ms` ahead, so no other looker takes
    it meanwhile, and one whose claimant died comes due again."""

    SOURCE = "claim_checks"
    k: IndexKey
    count: int
    claim_ms: int

    REPLY = Reply.of(Claimed, "score", "members")


@dataclass(slots=True)
class SettleCheck(Script[bool]):
    """Drop an entry, or move it to `next_score`; unless it was written since it was read."""

    SOURCE = "settle_check"
    k: IndexKey
    member: str
    score: bytes | str  # as read
    next_score: str  # ms, or '' to drop the entry

    def parse(self, reply: Any) -> bool:
        return bool(reply)  # False: written since, left as it is


def queued_look_ms(lease_ms: int) -> int:
    """How long after a run is queued a reaper first looks at it (and at an intent, a caller's that
    may not have pushed its job): two leases, so that a caller merely slow pushes its job first, and a
    run that started (or ended) in the meantime costs the look nothing."""
    return 2 * lease_ms


class Due(NamedTuple):
    """An entry of the leases index whose time came: a session, or an intent (`<sid> <random>`)."""

    member: str
    score: bytes  # as Redis wrote it: a reaper settles the entry only if it still reads so

    @property
    def session_id(self) -> str:
        return self.member.partition(" ")[0]

    @property
    def is_intent(self) -> bool:
        return " " in self.member


class DuePage(NamedTuple):
    due: list[Due]  # oldest first


@dataclass(slots=True)
class ExpiredLeases(Script[DuePage]):
    """A page of the leases index's due entries (Redis time), oldest first."""

    SOURCE = "expired_leases"
    k: IndexKey
    offset: int
    count: int

    REPLY = Reply.of(DuePage, "due")


@dataclass(slots=True)
class QueueKey(KeyGroup):
    queue: str


@dataclass(slots=True)
class JobArgs(ArgGroup):
    """What lib/admission.lua's `push_job` needs of the deployment to write an arq job (named as in `SessionArgs`)."""

    job_ttl_ms: int
    wake_channel: str
    job_prefix: str
    job_function: str
    admission: str  # the prefix of the admission keys (lib/admission.lua)

    @classmethod
    def of(cls, keys: Keys) -> "JobArgs":
        return cls(JOB_TTL_MS, keys.wake_channel, keys.arq_job(""), RUN_JOB, keys.admission)


@dataclass(slots=True)
class PushJob(Script[bool]):
    """Push the job a session's outbox held to arq's queue (with the queue apart); twice queues it once.
    Whether it pushed it (the queue did not hold it)."""

    SOURCE = "push_job"
    EFFECTS = Effect.ACKNOWLEDGED  # a job pushed counts as queued once a replica has it too
    k: QueueKey
    j: JobArgs  # an argument group: bound before the arguments that follow, so declared first
    session_id: str
    dispatch: bytes | str  # as the outbox held it: `<job id> <run id> <tenant> <user>` (lib/admission.lua)

    def parse(self, reply: Any) -> bool:
        return bool(reply)


@dataclass(slots=True)
class UnqueueJob(Script[None]):
    """Take the job a session's outbox held out of its tenant's line, if it still waits there: its run
    ended before it started (with the queue apart; lib/runs.lua's cancel_unheld)."""

    SOURCE = "unqueue_job"
    k: QueueKey
    j: JobArgs
    dispatch: bytes | str

    def parse(self, reply: Any) -> None:
        return None


@dataclass(slots=True)
class HooksKey(KeyGroup):
    hooks: str


@dataclass(slots=True)
class DropHook(Script[bool]):
    """A delivered (or given up) webhook event leaves the head of its session's `hooks` list."""

    SOURCE = "drop_hook"
    k: HooksKey
    entry: bytes  # as read: dropped only if still the head

    def parse(self, reply: Any) -> bool:
        return bool(reply)


class Archiving(StrEnum):
    """Where a session stands once the archive has its events up to a seq (archived.lua)."""

    DONE = "done"  # idle and all archived: its retention in Redis started, its entry dropped
    MORE = "more"  # events or a run to come: its entry stays
    GONE = "gone"  # no such session


@dataclass(slots=True)
class ArchivedKeys(KeyGroup):
    meta: str
    runs: str
    events: str
    gone: str
    steered: str
    kept_steps: str
    index: str  # the archive index


@dataclass(slots=True)
class Archived(Script[Archiving]):
    SOURCE = "archived"
    k: ArchivedKeys
    session_id: str
    archived: int  # the last seq the archive has
    claim: str  # the claim's score: the entry is dropped only if it still reads so
    ttl: int  # the session's retention in Redis, seconds

    def parse(self, reply: Any) -> Archiving:
        return Archiving(text_of(reply))
