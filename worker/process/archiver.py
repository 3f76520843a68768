"""Copies sessions to the archive (shared/store/archive.py), so that Redis may forget them.

Every worker process runs one when an archive is configured; `tokentail archiver` runs one alone.
The archive index (a sorted set beside the sessions, `archive-checks`) names the sessions to look
at and when: a run's start puts its session there due in 30 s (a long run is archived as it goes,
so its stream can still be trimmed), a run's end due at once, a deletion due at once. An archiver
claims due entries (claim_checks.lua moves them 30 s ahead: no other archiver takes them meanwhile,
and a dead archiver's come due again), copies each session's events after its `archived` id, in
order, in batches (each batch with the session's record, in one transaction; rows already there are
left as they are: copying twice stores nothing twice), and records how far it got (archived.lua).
Once an idle session is all in the archive, archived.lua starts its retention in Redis and drops the
entry; one still running keeps its entry and is looked at again after the claim.

A Postgres that is down stops only this: streams, runs and appends go on, Redis keeps everything
the archive lacks (streams are not trimmed past it, sessions do not expire before it), and the
archiver tries again with a growing pause. A session deleted through the API (its tombstone says
so) is deleted from the archive too.
"""

import asyncio
import logging
import time

from redis.asyncio import Redis

from tokentail.shared.connections.outage import is_outage
from tokentail.shared.plumbing.logs import RateLimitedLogger
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.archive import Archive, ArchiveConflict, ArchiveError
from tokentail.shared.store.archive_index import look_again_at
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore, archived_through, is_gone
from tokentail.shared.store.scripts.checks import Archived, ArchivedKeys, Archiving, ClaimChecks, IndexKey
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.shared.vocabulary.errors import ArchiveUnavailable
from tokentail.worker import metrics

logger = logging.getLogger(__name__)
CLAIM_MS = 30_000  # an archiver holds a claimed entry this long; start_run.lua looks at running sessions as often
BATCH = 1_000  # events per read and per transaction
CLAIMS_PER_ROUND = 16
POLL_SECONDS = 1.0  # with nothing due
MAX_PAUSE_SECONDS = 30.0  # between tries while Postgres (or Redis) is down
RETENTION_EVERY_SECONDS = 600.0
CONFLICT_RETRY_MS = 600_000  # a session whose events conflict with the archive's is tried again this late


def _now_ms() -> int:
    return int(time.time() * 1000)


class Archiver:
    def __init__(self, redis: Redis, archive: Archive, settings: Settings, claim_ms: int = CLAIM_MS) -> None:
        """`redis`: the sessions' Redis (one server: an archive does not work with a cluster yet)."""
        self.claim_ms = claim_ms
        self.redis = redis
        self.archive = archive
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._store = SessionStore(redis, settings)  # Redis only: what the archive does not have yet
        self._scripts = ScriptRunner(redis, Topology.of(settings))
        self._log = RateLimitedLogger(logger, every_seconds=30)

    async def run_forever(self) -> None:
        pause, retention_due, checked = POLL_SECONDS, 0.0, False
        paused_since: float | None = None  # when archiving stopped working, while it does not
        while True:
            try:
                if not checked:  # a schema behind would fail every write: say what to do, once in a while
                    await self.archive.check_schema()
                    checked = True
                busy = await self.archive_due()
                if self.settings.archive_retention_seconds and time.monotonic() >= retention_due:
                    forgotten = await self.archive.forget_before(time.time() - self.settings.archive_retention_seconds)
                    if forgotten:
                        logger.info("archive retention: %d sessions deleted", forgotten)
                    retention_due = time.monotonic() + RETENTION_EVERY_SECONDS
                if paused_since is not None:
                    logger.info("archiving resumed after %.0f s", time.monotonic() - paused_since)
                    paused_since = None
                pause = POLL_SECONDS
                if busy:
                    continue
            except (ArchiveUnavailable, ArchiveError) as exc:
                self._log.warning("archiving paused: %s", exc)
                paused_since = time.monotonic() if paused_since is None else paused_since
                pause = min(MAX_PAUSE_SECONDS, pause * 2)
            except Exception as exc:
                if not is_outage(exc):  # (a Redis outage is the reaper's to report)
                    logger.exception("archiving failed; trying again")
                    paused_since = time.monotonic() if paused_since is None else paused_since
                pause = min(MAX_PAUSE_SECONDS, pause * 2)
            await asyncio.sleep(pause)

    async def archive_due(self) -> int:
        """Archive the sessions whose entry came due; how many."""
        claimed = await self._scripts(ClaimChecks(IndexKey(self.keys.archive_checks), CLAIMS_PER_ROUND, self.claim_ms))
        for session_id in claimed.members:
            try:
                await self.archive_session(session_id, claimed.score)
            except ArchiveConflict as exc:
                # Not a pause of the archive: this session alone stays in Redis, unarchived, and is
                # tried again after a while; the others go on.
                metrics.ARCHIVE_CONFLICTS.inc()
                logger.error("not archiving session %s until an operator looks: %s", session_id, exc)
                await look_again_at(self.redis, self.keys, session_id, _now_ms() + CONFLICT_RETRY_MS)
        return len(claimed.members)

    async def archive_session(self, session_id: str, claim: str) -> Archiving:
        """Copy what the archive lacks of one session; where it then stands (archived.lua). Each
        batch of events goes with the session's record as Redis had it when the batch was read, and
        the last with the record as the pass ends, so the archive's record is never behind its events."""
        keys = self.keys.session(session_id)
        after = await archived_through(self.redis, keys)
        while True:
            session, events = await self._store.archivable(session_id, after, BATCH)
            if session is None:  # deleted (its tombstone says so) or expired before it was all archived
                if await is_gone(self.redis, keys):
                    await self.archive.delete(session_id)
                return await self._settle(session_id, 0, claim)
            # With no new events this writes only a record that changed (a pass every 30 s over a
            # waiting session writes nothing).
            await self.archive.save(
                session_id, session.tenant, session.model_dump_json(), session.last_event_id, events
            )
            after = events[-1].seq if events else after
            if len(events) < BATCH:
                return await self._settle(session_id, after, claim)
            await self._settle(session_id, after, claim)  # its stream may now be trimmed up to here

    async def _settle(self, session_id: str, archived: int, claim: str) -> Archiving:
        k = self.keys.session(session_id)
        keys = ArchivedKeys(k.meta, k.runs, k.events, k.gone, k.steered, k.kept_steps, self.keys.archive_checks)
        return await self._scripts(Archived(keys, session_id, archived, claim, self.settings.session_ttl_seconds))
