"""Fair admission: which queued runs start, and when, across tenants and end users.

A run's first job waits in its tenant's line on the queue's Redis; a worker's poll takes the tenants'
lines in turn (weighted by `TOKENTAIL_TENANT_WEIGHTS`), and starts a run only while its tenant and its
end user hold fewer slots than their caps (`TOKENTAIL_MAX_ACTIVE_RUNS_PER_TENANT`, `..._PER_USER`). A
run holds its slot from its claim until its job is over (it ended, waits for answers, or was handed
over); a takeover's job takes it again, without waiting: a run that started is never held back. A
run that waited without a worker (for answers, for its children) and a child wait in the line again,
at their place (a child's: its tree's root's).
How the keys are kept is shared/store/lua/lib/admission.lua; the claim is claim_jobs.lua and the give-back
finish_jobs.lua, all on the queue's Redis, where the caps are counted on every topology.

This module holds what Python adds: the claim's arguments, a tenant's line bound (checked before
anything is created, `QueuedRunLimit`: by queue_run.lua as it queues, where the queue is on the
sessions' Redis, else read by the gateway first), and the audit that gives back a slot whose job will never
finish (its worker died and its run ended without it: deleted, cancelled while it waited for a
takeover), so that no slot leaks, and reads the figures the metrics show.
"""

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from redis import exceptions as redis_errors

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.scripts.contract import Topology, shared_queue
from tokentail.shared.store.scripts.pickup import AdmissionArgs, GiveBack, RunningKey, Unpark
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.shared.vocabulary.errors import QueuedRunLimit

logger = logging.getLogger(__name__)

MOST_LOOKS = 256  # jobs of the lines one claim looks at: Redis serves nobody else while a script runs
USER_LOOKS = 32  # of one tenant's line in one turn, for a run whose user is below the cap
LINE_RETRY_AFTER = 5  # a full line empties as the tenant's runs start: ask again soon
# A run's slot is audited once it has held it this long: a younger one may not have started yet.
AUDIT_AFTER_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Admission:
    """A deployment's caps and weights, as the claim takes them (none, by default)."""

    keys: Keys
    tenant_cap: int = 0
    user_cap: int = 0
    tenant_caps: dict[str, int] = field(default_factory=dict)  # the tenants with a cap of their own
    weights: dict[str, int] = field(default_factory=dict)  # 1 for a tenant not listed

    @classmethod
    def of(cls, settings: Settings) -> "Admission":
        return cls(
            Keys(settings.key_prefix),
            settings.max_active_runs_per_tenant,
            settings.max_active_runs_per_user,
            settings.tenant_max_active_runs,
            settings.tenant_weights,
        )

    def claim_args(self) -> AdmissionArgs:
        return AdmissionArgs(self.keys.admission, self.tenant_cap, self.user_cap, MOST_LOOKS, USER_LOOKS)

    def flat_caps(self) -> list[Any]:
        """The per-tenant caps, flat `tenant, n` pairs (claim_jobs.lua)."""
        return _flat(self.tenant_caps)

    def flat_weights(self) -> list[Any]:
        return _flat(self.weights)

    def cap_of(self, tenant: str) -> int:
        return self.tenant_caps.get(tenant, self.tenant_cap)


def line_bound_in_queueing(settings: Settings) -> int:
    """The bound of a tenant's line that queue_run.lua checks itself, in the step that queues a run:
    with the queue on the sessions' Redis (the lines are there), the deployment's; else 0, and the
    gateways read a line's length before they queue (`TenantLines.check_room`)."""
    return settings.max_queued_runs_per_tenant if shared_queue(Topology.of(settings)) else 0


def line_full(bound: int) -> QueuedRunLimit:
    return QueuedRunLimit(
        f"this tenant has {bound} runs waiting to start already; try again once some have started", LINE_RETRY_AFTER
    )


class LinePlace(NamedTuple):
    place: int  # 1: the next of its tenant's runs to start
    waiting_for: Literal["turn", "tenant_cap", "user_cap"]  # what holds it: the tenants' turns, or a cap


class LineFigures(NamedTuple):
    tenant: str
    running: int  # its runs holding a slot
    waiting: int  # in its line
    parked: bool  # at its cap: its turns skipped until a slot frees


class TenantLines:
    """What the gateways read of the lines, on the queue's Redis: a tenant's line bound, and where a
    waiting run is in its line, and why it waits."""

    def __init__(
        self, queue: AnyRedis, keys: Keys, bound: int, admission: Admission | None = None, by_queueing: bool = False
    ) -> None:
        """`by_queueing`: the script that queues a run checks the bound itself (`line_bound_in_queueing`)."""
        self._redis = queue
        self._keys = keys
        self._bound = bound
        self._admission = admission or Admission(keys)
        self._by_queueing = by_queueing

    async def place_of(self, dispatch: str) -> LinePlace | None:
        """Where the job a session owes (its meta's `dispatch`: lib/jobs.lua's Jobs) waits in its tenant's
        line, and what holds it; None if it does not wait in a line (started, or queued behind the
        session's active run)."""
        job_id, _, tenant, user, *_ = [*dispatch.split(" "), "", ""]  # (lib/admission.lua's parse_dispatch)
        if not tenant:
            return None
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrank(self._keys.tenant_line(tenant), job_id)
            pipe.hlen(self._keys.tenant_running(tenant))
            pipe.hlen(self._keys.tenant_running(tenant, user))
            rank, tenant_running, user_running = await pipe.execute()
        if rank is None:
            return None
        cap, user_cap = self._admission.cap_of(tenant), self._admission.user_cap
        if cap and tenant_running >= cap:
            return LinePlace(rank + 1, "tenant_cap")
        if user_cap and user and user_running >= user_cap:
            return LinePlace(rank + 1, "user_cap")
        return LinePlace(rank + 1, "turn")

    async def figures(self, known: Iterable[str], only: str | None = None) -> list[LineFigures]:
        """By name, each tenant's figures: those with slots or lines, and the `known` ones (`only`:
        that tenant's alone). Two round trips, whatever the number of tenants."""
        keys = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.smembers(keys.admission_tenants)
            pipe.zrange(keys.admission_parked, 0, -1)
            members, parked_raw = await pipe.execute()
        names = {only} if only is not None else {member.decode() for member in members} | set(known)
        tenants = sorted(names)
        parked = {member.decode() for member in parked_raw}
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.hlen(keys.tenant_running(tenant))
                pipe.zcard(keys.tenant_line(tenant))
            counts = await pipe.execute()
        return [
            LineFigures(tenant, counts[2 * i], counts[2 * i + 1], tenant in parked) for i, tenant in enumerate(tenants)
        ]

    async def check_room(self, tenant: str) -> None:
        """`QueuedRunLimit` if the tenant's line holds as many runs as it may. Read before anything is
        created: requests of one tenant in flight together may each pass it (by their number). Nothing
        to read where the script that queues the run checks it (`by_queueing`), exactly."""
        if not self._bound or self._by_queueing:
            return
        waiting = await self._redis.zcard(self._keys.tenant_line(tenant))
        if waiting >= self._bound:
            raise line_full(self._bound)


class FollowerSlot:
    """The slot of a run that follows a child as it goes (`spawn_stream`): the child waits in the tenant's
    line as any run, so the parent lends its slot while it follows (it streams nothing of its own
    meanwhile), else a tenant at its cap would wait on itself; it takes it back, without waiting, once
    it follows none, as a run that started is never held back (its tenant may be one over its cap
    until this job ends). Lent while the run's first follow starts, taken back as its last ends."""

    def __init__(self, queue: AnyRedis, keys: Keys, tenant: str, lane: str, run_id: str) -> None:
        """`lane`: the run's session id, or its lane for a child (its job's first argument)."""
        self._redis = queue
        self._keys = keys
        self._tenant = tenant
        self._run = f"{lane} {run_id}"  # its field in the tenant's running hash (claim_jobs.lua's hold_slot)
        self._scripts = ScriptRunner(queue, Topology())  # the queue's Redis: one server
        self._follows = 0
        self._lent: bytes | None = None  # the slot as its job held it: `<job id> <user>`

    async def follow(self) -> None:
        self._follows += 1
        if self._follows > 1:
            return
        running = self._keys.tenant_running(self._tenant)
        held = await self._redis.hget(running, self._run)  # type: ignore[misc]
        if held is None:  # (no slot: a run whose job names no tenant)
            return
        keys = self._keys
        lent = await self._scripts(
            GiveBack(RunningKey(running), keys.admission, keys.wake_channel, self._tenant, self._run, held)
        )
        self._lent = held if lent else None

    async def followed(self) -> None:
        self._follows -= 1
        if self._follows > 0 or self._lent is None:
            return
        held, self._lent = self._lent.decode(), None
        job_id, _, user = held.partition(" ")
        # Unless a later job of the run holds it now (a takeover's), as a claim would write it.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._keys.tenant_running(self._tenant), self._run, held)
            if user:
                pipe.hsetnx(self._keys.tenant_running(self._tenant, user), self._run, job_id)
            await pipe.execute()


class SlotAudit:
    """Gives back the slots of runs that no longer run: each held slot, once old enough, is checked
    against its session (the run is still its active run, queued or running), and given back if not,
    unless its job changed meanwhile. A run whose worker died keeps its slot until it is taken over or
    fails; one deleted or cancelled meanwhile has no job left to give it back. And a tenant parked at
    its cap while holding fewer slots than its cap now (raised since, or a failover lost give-backs)
    takes turns again."""

    def __init__(self, queue: AnyRedis, sessions: AnyRedis, admission: Admission, interval: float) -> None:
        self._queue = queue
        self._sessions = sessions
        self._admission = admission
        self._keys = admission.keys
        self._interval = interval
        self._scripts = ScriptRunner(queue, Topology())  # the queue's Redis: one server
        self._seen: dict[tuple[str, str], tuple[bytes, float]] = {}  # (tenant, run) -> (held, first seen)

    async def run_forever(self, show: Callable[[dict[str, tuple[int, int]]], None]) -> None:
        """Audit every `interval`, and `show` the runs waiting and running per tenant after each pass."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.audit()
                show(await self.figures())
            except (redis_errors.RedisError, OSError) as exc:
                logger.warning("slot audit failed (%s: %s); trying again later", type(exc).__name__, exc)

    async def figures(self) -> dict[str, tuple[int, int]]:
        """tenant -> (runs waiting in its line, runs holding a slot)."""
        tenants = sorted(member.decode() for member in await self._queue.smembers(self._keys.admission_tenants))  # type: ignore[misc]
        async with self._queue.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.zcard(self._keys.tenant_line(tenant))
                pipe.hlen(self._keys.tenant_running(tenant))
            counts = await pipe.execute()
        return {tenant: (counts[2 * i], counts[2 * i + 1]) for i, tenant in enumerate(tenants)}

    async def audit(
        self, now: float | None = None, after: float = AUDIT_AFTER_SECONDS, tenant: str | None = None
    ) -> int:
        """One pass; how many slots it gave back. `after`: how long a slot must have been held, as passes
        saw it (0: every slot, now: an operator's audit from the console); `tenant`: its slots only."""
        now = asyncio.get_running_loop().time() if now is None else now
        seen: dict[tuple[str, str], tuple[bytes, float]] = {}
        old: list[tuple[str, str, bytes]] = []
        members = await self._queue.smembers(self._keys.admission_tenants)  # type: ignore[misc]
        for name in (member.decode() for member in members):
            if tenant is not None and name != tenant:
                continue
            held = await self._queue.hgetall(self._keys.tenant_running(name))  # type: ignore[misc]
            for raw_run, value in held.items():
                key = (name, raw_run.decode())
                before = self._seen.get(key)
                since = before[1] if before is not None and before[0] == value else now
                seen[key] = (value, since)
                if now - since >= after:
                    old.append((*key, value))
        self._seen = seen
        gone = [entry for entry, running in zip(old, await self._still_running(old), strict=True) if not running]
        keys = self._keys
        for tenant, run, value in gone:
            running = RunningKey(keys.tenant_running(tenant))
            await self._scripts(GiveBack(running, keys.admission, keys.wake_channel, tenant, run, value))
        for raw_tenant in await self._queue.zrange(keys.admission_parked, 0, -1):
            tenant = raw_tenant.decode()
            running = RunningKey(keys.tenant_running(tenant))
            cap = self._admission.cap_of(tenant)
            await self._scripts(Unpark(running, keys.admission, keys.wake_channel, tenant, cap))
        return len(gone)

    async def _still_running(self, slots: list[tuple[str, str, bytes]]) -> list[bool]:
        """Whether each slot's run is still its session's active run, queued or running."""
        if not slots:
            return []
        async with self._sessions.pipeline(transaction=False) as pipe:
            for _, run, _ in slots:
                session_id, _, run_id = run.partition(" ")
                keys = self._keys.session(session_id)
                pipe.hget(keys.meta, "active_run")
                pipe.hget(keys.runs, run_id)
            replies = await pipe.execute()
        running = []
        for i, (_, run, _) in enumerate(slots):
            active, record = replies[2 * i], replies[2 * i + 1]
            run_id = run.partition(" ")[2]
            running.append(active is not None and active.decode() == run_id and _queued_or_running(record))
        return running


def _flat(numbers: dict[str, int]) -> list[Any]:
    return [value for pair in numbers.items() for value in pair]


def _queued_or_running(record: bytes | None) -> bool:
    return record is not None and json.loads(record).get("status") in ("queued", "running")
