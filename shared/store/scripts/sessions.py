"""The contracts of the scripts that make, copy, bring back and delete a session (shared/store/lua/)."""

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from tokentail.shared.store.reads import compact_json
from tokentail.shared.store.scripts.checks import JobArgs
from tokentail.shared.store.scripts.contract import Effect, KeyGroup, Script, archived, only_if, shared_queue
from tokentail.shared.store.scripts.runs import IndexArgs, RunKeys, SessionArgs
from tokentail.shared.vocabulary.records import SessionRecord


def session_fields(session: SessionRecord) -> list[str]:
    """A session's meta fields, as name, value pairs."""
    fields = [
        ("created_at", repr(session.created_at)),
        ("tenant", session.tenant),
        ("model", session.model or ""),
        ("agent", session.agent or ""),
        ("params", compact_json(session.params)),
        ("metadata", compact_json(session.metadata)),
    ]
    if session.lineage:
        fields.append(("lineage", compact_json([origin.model_dump() for origin in session.lineage])))
    if session.webhook:
        fields.append(("webhook", session.webhook))
    if session.user:
        fields.append(("user", session.user))
    return [item for pair in fields for item in pair]


class Creation(IntEnum):
    """What became of a session to make (create_session.lua, fork_session.lua)."""

    MADE = 1
    EXISTS = 0  # a session of that id exists already
    GONE = -1  # the id is a deleted or expired session's


@dataclass(slots=True)
class CreateKeys(KeyGroup):
    meta: str
    gone: str


@dataclass(slots=True)
class CreateSession(Script[Creation]):
    SOURCE = "create_session"
    EFFECTS = Effect.ACKNOWLEDGED
    k: CreateKeys
    ttl: int
    tombstone: int
    tenant: str
    fields: list[str]  # the session's meta fields, as name, value pairs

    def parse(self, reply: Any) -> Creation:
        return Creation(int(reply))


@dataclass(slots=True)
class DeleteKeys(KeyGroup):
    meta: str
    runs: str
    events: str
    lease: str
    pending: str
    gone: str
    steps: str
    steers: str
    steered: str
    kept_steps: str
    task_push: str  # its tasks' push configs, with their credentials
    index: str | None = only_if(shared_queue)
    archive: str | None = only_if(archived)
    queue: str | None = only_if(shared_queue)  # a job still waiting in its tenant's line leaves it


@dataclass(slots=True)
class DeleteSession(Script[tuple[bytes, ...]]):
    """The session deleted; traced, the records of the runs it ended, as they were."""

    SOURCE = "delete_session"
    EFFECTS = Effect.TAKES_LEASE  # fenced by the stream's deletion (append_at.lua's NOMKSTREAM)
    k: DeleteKeys
    j: JobArgs
    tenant: str
    tombstone: int
    session_id: str
    traced: str  # '1': reply with the records of the runs it ends, for their spans

    def parse(self, reply: Any) -> tuple[bytes, ...]:
        return tuple(reply)


@dataclass(slots=True)
class ReviveKeys(KeyGroup):
    meta: str
    runs: str


@dataclass(slots=True)
class ReviveSession(Script[bool]):
    SOURCE = "revive_session"
    k: ReviveKeys
    last_event_id: int
    ttl: int
    fields: list[str]  # meta fields as name, value pairs
    runs: list[str]  # run id, run JSON pairs

    def parse(self, reply: Any) -> bool:
        return bool(reply)


@dataclass(slots=True)
class ForkSession(Script[Creation]):
    """A fork made (fork_session.lua): of a session's events up to a turn's end, idle; or up to an event
    inside a run (`run_id`), which goes on in the fork (`go_on`: its job queued) or ends there."""

    SOURCE = "fork_session"
    EFFECTS = Effect.ACKNOWLEDGED
    k: RunKeys  # the fork's
    s: SessionArgs  # the fork's
    index: IndexArgs  # the console's runs index, for the run that goes on (its `all_runs` '': not here)
    fields: list[str]  # meta fields as name, value pairs
    runs: list[str]  # run id, run JSON pairs (as stored)
    kept_steps: list[str]  # run id, kept steps (JSON) pairs: of the runs it copies that ended
    events: list[Any]  # seq, type, data, ts quadruples, in order
    run_id: str  # the run going at the fork's last event ('': none)
    at: int  # the fork's last event
    go_on: str  # '1': the run goes on from `at` (queued, with `steps`); '0': it ends there, cancelled
    job_id: str  # its job's (a run id is its first job's: each fork's is another)
    reason: str  # why it ends, when it does not go on (and each run in line behind it)
    steps: list[str]  # the steps it goes on with, as its steps hash holds them: name, value pairs
    pending: list[str]  # the runs in line behind it at `at`, in order
    # Its tree's runs going at `at` (parents first), each six: run id, lane id, the lane's meta and steps
    # keys (the session's hash tag: its slot), job id, the steps it goes on with (JSON, as `steps`).
    children: list[str]

    def effects(self) -> Effect:
        if not self.run_id:
            return self.EFFECTS
        return self.EFFECTS | (Effect.QUEUES_JOB if self.go_on == "1" else Effect.REPORTS)

    def queued_lanes(self) -> tuple[str, ...]:
        return tuple(self.children[1::6]) if self.go_on == "1" else ()

    def parse(self, reply: Any) -> Creation:
        return Creation(int(reply))


@dataclass(slots=True)
class MetaKey(KeyGroup):
    meta: str


@dataclass(slots=True)
class WatchTaskPush(Script[bool]):
    """Mark a session whose tasks may have push configs (watch_task_push.lua); False if it is gone."""

    SOURCE = "watch_task_push"
    k: MetaKey

    def parse(self, reply: Any) -> bool:
        return bool(int(reply))


@dataclass(slots=True)
class MetaRunsKeys(KeyGroup):
    meta: str
    runs: str


@dataclass(slots=True)
class CountFirstDelta(Script[bytes | None]):
    """Whether this gateway counts run `run_id`'s time to first delta (count_first_delta.lua): its
    record if so, None if another counted it (or a later run), or the session is gone."""

    SOURCE = "count_first_delta"
    k: MetaRunsKeys
    run_id: str

    def parse(self, reply: Any) -> bytes | None:
        return reply or None


@dataclass(slots=True)
class IndexKeys(KeyGroup):
    runs: str  # every run's (Keys.admin_runs)
    tenant_runs: str  # its tenant's (Keys.tenant_admin_runs)
    run: str  # the run's session (Keys.admin_run)


@dataclass(slots=True)
class IndexRun(Script[None]):
    """List a run just queued in the console's runs index (shared/store/run_index.py)."""

    SOURCE = "index_run"
    k: IndexKeys
    session_id: str
    run_id: str
    score: int  # when (µs)
    keep: int  # entries each sorted set keeps, the newest
    ttl: int  # seconds the run's session is kept under its id

    def parse(self, reply: Any) -> None:
        return None
