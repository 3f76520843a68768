"""What a deployment adds around some scripts, wrapped once around the script runner at start-up.

Each policy is a `Run` around a `Run`, and acts on what a contract declares it does (its
`Effect`s), never on which method called it. `runner_for` builds the stack a deployment needs:

- `QueueApart`, with the job queue on a Redis of its own: a script that queues a job leaves it in
  the session's outbox; the job is pushed after the script (named in its reply, where its contract
  says MAY_DISPATCH; else read from the outbox), with an intent left in the leases index before, so
  that a reaper pushes it if this process dies in between (or if arq ends the job without starting
  the run), and a reaper's look pushes what it finds owed; the webhooks index gets the session before
  and after a script that may report to its webhook. A run's claim is watched before (a reaper must
  find every lease: a worker's claim of the job wrote it) and its job taken out of the queue after (with
  the worker's next call there), shared/store/lease_index.py.
- `Revival`, with an archive: a new turn on a session that only the archive still holds brings it
  back into Redis (revive_session.lua), once, and is queued again.

How to add a topology option: a policy here, acting on effects (declare a new `Effect` on the
contracts it concerns), and a line in `runner_for`.
"""

from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from tokentail.shared.connections.redis_clients import AnyRedis, replicated
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import LANE_SEPARATOR, Keys, parent_lane
from tokentail.shared.store.lease_index import LeaseIndex
from tokentail.shared.store.scripts.contract import Effect, Script, Topology
from tokentail.shared.store.scripts.runner import Run, ScriptRunner
from tokentail.shared.store.scripts.runs import QueueOutcome, QueueRun, RunKeys, SessionArgs, encode_run
from tokentail.shared.store.scripts.sessions import ReviveKeys, ReviveSession, session_fields
from tokentail.shared.store.webhook_index import WebhookIndex
from tokentail.shared.vocabulary.records import SessionRecord

if TYPE_CHECKING:
    from tokentail.shared.store.archive import Archive

R = TypeVar("R")


# What the effects say a script or its reply has (shared/store/scripts/contract.py `Effect`).
class _OfSession(Protocol):
    k: RunKeys
    s: SessionArgs


class _Claiming(_OfSession, Protocol):  # CLAIMS_RUN
    job_id: str


class _Claimed(Protocol):  # CLAIMS_RUN's reply
    claimed: bool


class _Dispatching(Protocol):  # MAY_DISPATCH's reply (`unqueue`, where it has one)
    dispatch: bytes | None

    def _replace(self, *, pushed: bool) -> Any: ...


class _Queued(Protocol):  # MAY_REVIVE's reply
    outcome: QueueOutcome


def _session_of(script: Script[Any]) -> str:
    """The session of a script that queues, claims or ends runs (its `SessionArgs`)."""
    return cast(_OfSession, script).s.session_id


class QueueApart:
    def __init__(
        self, run: Run, redis: AnyRedis, keys: Keys, leases: LeaseIndex, webhooks: WebhookIndex | None
    ) -> None:
        """`redis`: the sessions'; `webhooks`: the webhooks index to keep, when webhooks are on."""
        self._run = run
        self._redis = redis
        self._keys = keys
        self._leases = leases
        self._webhooks = webhooks

    async def __call__(self, script: Script[R]) -> R:
        effects = script.effects()
        if not effects & (Effect.QUEUES_JOB | Effect.REPORTS | Effect.FREES_NEXT | Effect.CLAIMS_RUN):
            return await self._run(script)
        session_id = _session_of(script)
        # A child's end (or its question's expiry) may queue its waiting parent, in the lane one up
        # (lib/runs.lua's child_ended): that outbox is looked at too, as are those of lanes it names.
        lanes = (
            (session_id, parent_lane(session_id)) if LANE_SEPARATOR in session_id else (session_id,)
        ) + script.queued_lanes()  # (a fork's children)
        if Effect.CLAIMS_RUN in effects:
            await self._leases.watch(session_id, cast(_Claiming, script).job_id)
        if Effect.QUEUES_JOB in effects:
            # A run queued: its job's claim drops the intent (claim_jobs.lua). Any other: reapers do.
            await self._leases.intend(session_id, script.run_id if isinstance(script, QueueRun) else None)
        if effects & (Effect.QUEUES_JOB | Effect.FREES_NEXT):
            for lane in lanes[1:]:
                await self._leases.intend(lane)
        hooks = self._webhooks if effects & (Effect.QUEUES_JOB | Effect.REPORTS) else None
        if hooks is not None:
            await hooks.intend(session_id)
        reply = await self._run(script)
        if hooks is not None:
            await hooks.due_now(session_id)
        if Effect.MAY_DISPATCH in effects:  # the session's own outbox, as its reply names it
            owed = cast(_Dispatching, reply)
            pushed = await self._push(session_id, owed.dispatch, getattr(owed, "unqueue", None))
            reply = cast(R, owed._replace(pushed=pushed))
        if effects & (Effect.QUEUES_JOB | Effect.FREES_NEXT):
            for lane in lanes[1:] if Effect.MAY_DISPATCH in effects else lanes:
                await self._push_outbox(lane)
        if Effect.CLAIMS_RUN in effects and cast(_Claimed, reply).claimed:
            await self._leases.take(cast(_Claiming, script).job_id)
        return reply

    async def _push_outbox(self, session_id: str) -> None:
        """Push what the outbox holds, read from it (a script whose reply does not name it)."""
        meta = self._keys.session(session_id).meta
        dispatch, unqueue = await self._redis.hmget(meta, ["dispatch", "unqueue"])  # type: ignore[misc]
        await self._push(session_id, dispatch, unqueue)

    async def _push(self, session_id: str, dispatch: bytes | None, unqueue: bytes | None) -> bool:
        """Push the job an outbox holds; and take out of its tenant's line the job of a run that ended
        unstarted (lib/runs.lua's cancel_unheld). A process that dies before leaves that job to its worker,
        which finds its run ended. Whether it pushed the job (the queue did not hold it)."""
        pushed = await self._leases.push(session_id, dispatch) if dispatch else False
        if unqueue:
            await self._leases.unqueue(unqueue)
            await self._redis.hdel(self._keys.session(session_id).meta, "unqueue")  # type: ignore[misc]
        return pushed


class Revival:
    def __init__(self, run: Run, archive: "Archive") -> None:
        self._run = run
        self._archive = archive

    async def __call__(self, script: Script[R]) -> R:
        reply = await self._run(script)
        if Effect.MAY_REVIVE in script.effects() and cast(_Queued, reply).outcome is QueueOutcome.MISSING:
            if await self._revive(cast(_OfSession, script)):
                return await self._run(script)
        return reply

    async def _revive(self, queued: _OfSession) -> bool:
        """A session only the archive still holds, back in Redis: whether it was."""
        archived = await self._archive.session(queued.s.session_id)
        if archived is None:
            return False
        session = SessionRecord.model_validate_json(archived.record)
        runs = [item for run in session.runs for item in (run.run_id, encode_run(run))]
        keys = ReviveKeys(queued.k.meta, queued.k.runs)
        await self._run(ReviveSession(keys, archived.last_event_id, queued.s.ttl, session_fields(session), runs))
        return True


def sessions_runner(redis: AnyRedis, settings: Settings) -> ScriptRunner:
    """The script runner of the sessions' Redis. On a Sentinel setup, what a client is told is done,
    and a run's first and last writes, wait for a replica; the events between do not: a run appends
    again what a failover lost (worker/writes/lost_writes.py)."""
    acknowledge = not settings.redis_cluster and replicated(settings.redis_url)
    return ScriptRunner(redis, Topology.of(settings), acknowledge)


def with_policies(
    runner: ScriptRunner, settings: Settings, leases: LeaseIndex, webhooks: WebhookIndex, archive: "Archive | None"
) -> Run:
    """`runner`, wrapped in what this deployment uses."""
    run: Run = runner
    if settings.split_queue:
        hooks = webhooks if settings.webhook_allowed_urls else None
        run = QueueApart(run, runner.redis, Keys(settings.key_prefix), leases, hooks)
    if archive is not None:
        run = Revival(run, archive)
    return run
