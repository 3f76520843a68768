"""The contracts of the scripts by which a worker claims and finishes arq jobs (worker/process/arq_shell.py).

They run on the queue's Redis and keep arq 0.28's keys and their meaning, so a plain arq client or
the `arq` CLI sees what arq's own worker would leave: a claimed job's in-progress key, its retry
count, its job key until it ends, its entry in the queue until it ends (or `start_run.lua` takes it
out). arq's keys of one job are named from its id and arq's prefixes (arq.constants), as arq names
them, so the scripts take the prefixes and build them (as `push_job` in lib/admission.lua builds the job key).
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

from tokentail.shared.store.scripts.contract import ArgGroup, KeyGroup, Script
from tokentail.shared.store.scripts.reply import Reply

# The most jobs one claim takes: Redis serves nobody else while a script runs.
CLAIM_MOST = 256


@dataclass(slots=True)
class ArqKeys(KeyGroup):
    """arq's queue (a sorted set of job ids by when they are due, ms) and its set of jobs to abort; and
    the leases index beside them (shared/store/lease_index.py), which a claim and a finish keep."""

    queue: str
    aborts: str
    index: str


@dataclass(slots=True)
class ArqPrefixes(ArgGroup):
    """arq's prefixes of a job's keys (arq.constants): `<prefix><job id>`."""

    in_progress: str
    job: str
    retry: str
    result: str


@dataclass(slots=True)
class AdmissionArgs(ArgGroup):
    """What the claim needs of the deployment's admission (lib/admission.lua; shared/features/admission.py):
    the keys' prefix, the caps on a tenant's and an end user's runs running at once (0: none), and how
    many jobs of the lines one claim looks at, in all and of one tenant's line in one turn."""

    admission: str
    tenant_cap: int
    user_cap: int
    most_looks: int
    user_looks: int


class ClaimedJob(NamedTuple):
    job_id: str
    score: int  # when it was due (ms), as arq's run_job is given it
    payload: bytes | None  # None: the job key expired
    job_try: int  # arq's retry count, counted by the claim as arq's run_job counts it
    aborted: bool  # an abort was asked (and taken) before it started
    lined_at: int | None = None  # a job the claim took from its tenant's line: when it joined it (ms)
    watched: str | None = None  # the session of its run, watched in the leases index (`watch_ms`)...
    watched_at: str | None = None  # ...at this score, as Redis keeps it


class Claim(NamedTuple):
    jobs: list[ClaimedJob]
    looked: int  # ids of due jobs read: fewer than asked means the end of what is due


@dataclass(slots=True)
class ClaimJobs(Script[Claim]):
    """Claim up to `most` of the jobs due by `now_ms` (the worker's clock, as arq's), looking at
    most at `count` ids from `offset` in the queue: each not in progress is marked in progress for
    `in_progress_ms`, its retry count goes up (kept `retry_ttl` s), and it is returned with its
    payload. With `abort` (arq's allow_abort_jobs), an abort asked for it is taken and told. With
    slots left, runs' first jobs from the tenants' lines, in turn (`q`; `tenant_caps`: the tenants
    whose cap is not `q.tenant_cap`, and `weights`, flat `tenant, n` pairs). With `watch_ms` (the queue
    apart from the sessions), each run's session is watched in the leases index, due `watch_ms` later,
    in place of its queuer's intent; first, the jobs `taken` leave the queue (their runs started)."""

    SOURCE = "claim_jobs"
    k: ArqKeys
    p: ArqPrefixes
    q: AdmissionArgs
    now_ms: int
    offset: int
    count: int
    most: int
    in_progress_ms: int
    retry_ttl: int
    abort: int
    watch_ms: int  # 0: no watch (one Redis: start_run.lua keeps the index exact)
    tenant_caps: list[Any]
    weights: list[Any]
    taken: list[str]

    REPLY = Reply.of(Claim, "looked", "jobs")


class Finish(NamedTuple):
    """What arq's `Worker.finish_job` is told of one job, as the script takes it ('' for none)."""

    job_id: str
    finish: bool  # the job is over: its keys go (else it stays queued, to run again)
    result: bytes | str = ""  # arq's serialised result, kept under its result key
    result_ms: int | str = ""  # how long ('': for ever)
    incr_score: int | str = ""  # a retry deferred: its score moves by this (ms)
    keep_in_progress_ms: int | str = ""  # the in-progress key kept this long ('': deleted)


@dataclass(slots=True)
class FinishJobs(Script[None]):
    """Finish many jobs, each as arq's `finish_job` would in a transaction of its own.
    `finishes`: each job's `Finish`, its fields in order. First, the jobs `taken` leave the queue (their
    runs started), and the watches `dropped` (session, score: flat pairs) leave the leases index, unless
    written since their claims wrote them (their runs ended)."""

    SOURCE = "finish_jobs"
    k: ArqKeys
    p: ArqPrefixes
    admission: str  # the admission keys' prefix: a job over gives its run's slot back
    wake_channel: str  # idle workers are woken there when a slot frees for a waiting run
    taken: list[str]
    dropped: list[str]
    finishes: list[Any]

    @classmethod
    def of(
        cls,
        keys: ArqKeys,
        prefixes: ArqPrefixes,
        admission: str,
        wake_channel: str,
        finishes: list[Finish],
        taken: list[str] | None = None,
        dropped: list[str] | None = None,
    ) -> "FinishJobs":
        flat = [value for one in finishes for value in (*one[:1], int(one.finish), *one[2:])]
        return cls(keys, prefixes, admission, wake_channel, taken or [], dropped or [], flat)

    def parse(self, reply: Any) -> None:
        return None


@dataclass(slots=True)
class RunningKey(KeyGroup):
    running: str  # a tenant's running hash (lib/admission.lua)


@dataclass(slots=True)
class GiveBack(Script[bool]):
    """Give back the slot run `run` (`<sid> <run id>`) holds, if it still holds it as `held` (its
    job and user, as read), as a job of it that is over would (lib/admission.lua's give_back_slot). Whether it
    gave it back."""

    SOURCE = "give_back"
    k: RunningKey
    admission: str
    wake_channel: str
    tenant: str
    run: str
    held: bytes | str

    def parse(self, reply: Any) -> bool:
        return bool(reply)


@dataclass(slots=True)
class Unpark(Script[bool]):
    """Let a tenant parked at its cap take turns again if it holds fewer slots than `cap` (unpark.lua)."""

    SOURCE = "unpark"
    k: RunningKey
    admission: str
    wake_channel: str
    tenant: str
    cap: int  # the tenant's cap now (0: none)

    def parse(self, reply: Any) -> bool:
        return bool(reply)
