"""The archive: sessions in PostgreSQL under the ids they had in Redis (optional: `TOKENTAIL_ARCHIVE_URL`).

Redis is the hot copy a live stream is served from; the archive is where a session's events go to
last (`archive_retention_days`) once they are written, so that Redis can forget them: its stream is
never trimmed past what the archive has, and an idle session's keys expire (`session_ttl_seconds`)
only after the archive has all of it (worker/archiver.py). Readers do not see the seam: a position
Redis no longer holds is read from here, then the Redis tail (shared/store.py).

Two tables: a session's record (its meta and runs, as `GET /v1/sessions/{sid}` shows them) and its
events, keyed by (namespace, session id, seq), the namespace being the deployment's key prefix. Writes
are idempotent (a row already there is left alone), so archiving is at least once with no duplicate.
The schema is made by `tokentail migrate` (MIGRATIONS, in order, each once); an archive whose schema
is behind refuses to start, saying so.
"""

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from tokentail.shared.errors import ArchiveUnavailable
from tokentail.shared.settings import Settings
from tokentail.shared.store import StoredEvent

try:  # the `archive` extra: only a deployment with an archive needs the driver
    import asyncpg
except ImportError:  # pragma: no cover - tests install the extra
    asyncpg = None

MIGRATIONS: list[str] = [
    """
    CREATE TABLE tokentail_sessions (
        namespace text NOT NULL,
        session_id text NOT NULL,
        tenant text NOT NULL,
        record text NOT NULL,           -- the session and its runs, as JSON (shared/records.py)
        last_event_id bigint NOT NULL,
        archived_at double precision NOT NULL,  -- Unix time of the last write: retention counts from it
        PRIMARY KEY (namespace, session_id)
    );
    CREATE TABLE tokentail_events (
        namespace text NOT NULL,
        session_id text NOT NULL,
        seq bigint NOT NULL,
        type text NOT NULL,
        data text NOT NULL,             -- the event's JSON as clients get it, forwarded as it is
        ts_us bigint NOT NULL,
        PRIMARY KEY (namespace, session_id, seq),
        FOREIGN KEY (namespace, session_id) REFERENCES tokentail_sessions ON DELETE CASCADE
    );
    CREATE INDEX tokentail_sessions_archived_at ON tokentail_sessions (namespace, archived_at);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class ArchiveError(RuntimeError):
    """The archive cannot be used as configured (no driver, a schema behind)."""


def _driver() -> Any:
    if asyncpg is None:
        raise ArchiveError("TOKENTAIL_ARCHIVE_URL needs the archive driver: pip install 'tokentail[archive]'")
    return asyncpg


async def migrate(url: str) -> list[int]:
    """Bring the archive's schema up to date; the migrations applied (numbered from 1)."""
    connection = await _driver().connect(url)
    try:
        async with connection.transaction():
            # One migrator at a time: the second waits for the first, then finds nothing to do.
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext('tokentail_schema'))")
            await connection.execute("CREATE TABLE IF NOT EXISTS tokentail_schema (version integer NOT NULL)")
            version = await connection.fetchval("SELECT max(version) FROM tokentail_schema") or 0
            applied = []
            for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                await connection.execute(sql)
                await connection.execute("INSERT INTO tokentail_schema (version) VALUES ($1)", number)
                applied.append(number)
            return applied
    finally:
        await connection.close()


CONNECT_TIMEOUT = 5.0  # a Postgres that is down is told apart quickly; asyncpg waits 60 s by default
COMMAND_TIMEOUT = 60.0


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Postgres down, unreachable or failing: `ArchiveUnavailable`, which readers answer with a 503
    and the archiver waits out."""
    try:
        yield
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ArchiveUnavailable(exc) from exc


async def open_archive(settings: Settings) -> "Archive | None":
    """The archive the settings name (not connected yet), or None."""
    if settings.archive_url is None:
        return None
    archive = Archive(settings.archive_url, settings.key_prefix)
    await archive.start()
    return archive


class ArchivedSession:
    """What the archive holds of a session besides its events."""

    __slots__ = ("last_event_id", "record", "tenant")

    def __init__(self, tenant: str, record: str, last_event_id: int) -> None:
        self.tenant = tenant
        self.record = record
        self.last_event_id = last_event_id


class Archive:
    def __init__(self, url: str, namespace: str, max_connections: int = 4) -> None:
        self._url = url
        self._namespace = namespace
        self._max_connections = max_connections
        self._pool: Any = None

    async def start(self) -> None:
        """Connect (lazily: a Postgres that is down delays archiving, never the start of a process)."""
        self._pool = _driver().create_pool(
            self._url,
            min_size=0,
            max_size=self._max_connections,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
        )
        await self._pool

    async def check_schema(self) -> None:
        with _unavailable():
            async with self._pool.acquire() as connection:
                exists = await connection.fetchval("SELECT to_regclass('tokentail_schema') IS NOT NULL")
                version = await connection.fetchval("SELECT max(version) FROM tokentail_schema") if exists else 0
        if (version or 0) < SCHEMA_VERSION:
            raise ArchiveError(
                f"the archive's schema is at version {version or 0}, this tokentail needs {SCHEMA_VERSION}:"
                " run `tokentail migrate`"
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def save(
        self, session_id: str, tenant: str, record: str, last_event_id: int, events: Sequence[StoredEvent]
    ) -> None:
        """The session's record and `events` (in order, from where the archive stopped), in one
        transaction. Events already there are left as they are."""
        with _unavailable():
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute(
                    """INSERT INTO tokentail_sessions
                           (namespace, session_id, tenant, record, last_event_id, archived_at)
                       VALUES ($1, $2, $3, $4, $5, $6)
                       ON CONFLICT (namespace, session_id) DO UPDATE SET record = EXCLUDED.record,
                           last_event_id = GREATEST(tokentail_sessions.last_event_id, EXCLUDED.last_event_id),
                           archived_at = EXCLUDED.archived_at""",
                    self._namespace,
                    session_id,
                    tenant,
                    record,
                    last_event_id,
                    time.time(),
                )
                if events:
                    await connection.execute(
                        """INSERT INTO tokentail_events (namespace, session_id, seq, type, data, ts_us)
                           SELECT $1, $2, * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::bigint[])
                           ON CONFLICT DO NOTHING""",
                        self._namespace,
                        session_id,
                        [event.seq for event in events],
                        [event.type.decode() for event in events],
                        [event.data.decode() for event in events],
                        [event.ts_us for event in events],
                    )

    async def session(self, session_id: str) -> ArchivedSession | None:
        with _unavailable():
            row = await self._pool.fetchrow(
                "SELECT tenant, record, last_event_id FROM tokentail_sessions WHERE namespace = $1 AND session_id = $2",
                self._namespace,
                session_id,
            )
        return ArchivedSession(row["tenant"], row["record"], row["last_event_id"]) if row is not None else None

    async def read(self, session_id: str, after: int, count: int, before: int | None = None) -> list[StoredEvent]:
        """Events with ids after `after` (and before `before`), oldest first, at most `count`."""
        with _unavailable():
            rows = await self._pool.fetch(
                """SELECT seq, type, data, ts_us FROM tokentail_events
                   WHERE namespace = $1 AND session_id = $2 AND seq > $3 AND seq < $4 ORDER BY seq LIMIT $5""",
                self._namespace,
                session_id,
                after,
                before if before is not None else 2**62,
                count,
            )
        return [StoredEvent(row["seq"], row["type"].encode(), row["data"].encode(), row["ts_us"]) for row in rows]

    async def first_seq(self, session_id: str) -> int | None:
        with _unavailable():
            return await self._pool.fetchval(  # type: ignore[no-any-return]
                "SELECT min(seq) FROM tokentail_events WHERE namespace = $1 AND session_id = $2",
                self._namespace,
                session_id,
            )

    async def delete(self, session_id: str) -> None:
        with _unavailable():
            await self._pool.execute(
                "DELETE FROM tokentail_sessions WHERE namespace = $1 AND session_id = $2", self._namespace, session_id
            )

    async def forget_before(self, archived_before: float) -> int:
        """Delete the sessions last archived before this Unix time (archive retention); how many."""
        with _unavailable():
            status = await self._pool.execute(
                "DELETE FROM tokentail_sessions WHERE namespace = $1 AND archived_at < $2",
                self._namespace,
                archived_before,
            )
        return int(status.rsplit(" ", 1)[-1])
