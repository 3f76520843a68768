"""The archive: sessions in PostgreSQL under the ids they had in Redis (optional: `TOKENTAIL_ARCHIVE_URL`).

Redis is the hot copy a live stream is served from; the archive is where a session's events go to
last (`archive_retention_days`) once they are written, so that Redis can forget them: its stream is
never trimmed past what the archive has, and an idle session's keys expire (`session_ttl_seconds`)
only after the archive has all of it (worker/process/archiver.py). Readers do not see the seam: a position
Redis no longer holds is read from here, then the Redis tail (shared/store/reads.py).

Two tables: a session's record (its meta and runs, as `GET /v1/sessions/{sid}` shows them) and its
events, keyed by (namespace, session id, seq), the namespace being the deployment's key prefix (and a
third, `tokentail_schema`, with the schema's version). Writes are idempotent (a row already there is
left alone), so archiving is at least once with no duplicate; an event that comes again with other
content under an id the archive holds is refused (`ArchiveConflict`), never silently kept or replaced.
The schema is made by `tokentail migrate` (MIGRATIONS, in order, each once); an archive whose schema
is behind refuses to start, saying so.

Every use of a connection is bounded, its checkout included (`archive_timeout_seconds` for readers,
who wait with a client; `WRITE_TIMEOUT_SECONDS` for the archiver), and each is one statement, so a
bound that fires drops the connection at once: asyncpg's own cancel would ask the server first, and a
frozen server answers that no sooner than the query.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import ArchivedSession, StoredEvent
from tokentail.shared.vocabulary.errors import ArchiveUnavailable

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
        record text NOT NULL,           -- the session and its runs, as JSON (shared/vocabulary/records.py)
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


class ArchiveConflict(RuntimeError):
    """Events came to the archive under ids it holds with other content: Redis gave an id out twice
    (a session brought back under an id it had, events taken back by a failover and written again
    otherwise). Nothing of the batch was written; the session is not archived until an operator looks."""

    def __init__(self, session_id: str, seqs: list[int]) -> None:
        super().__init__(f"session {session_id}: events {seqs} differ from the archive's under the same ids")
        self.session_id = session_id
        self.seqs = seqs


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
WRITE_TIMEOUT_SECONDS = 60.0  # an archiver's batch: nobody waits on it, but a frozen server must not hold it


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
    archive = Archive(settings.archive_url, settings.key_prefix, read_timeout=settings.archive_timeout_seconds)
    await archive.start()
    return archive


class Archive:
    def __init__(self, url: str, namespace: str, max_connections: int = 4, read_timeout: float = 5.0) -> None:
        self._url = url
        self._namespace = namespace
        self._max_connections = max_connections
        self._read_timeout = read_timeout
        self._pool: Any = None

    async def start(self) -> None:
        """Connect (lazily: a Postgres that is down delays archiving, never the start of a process)."""
        self._pool = _driver().create_pool(
            self._url,
            min_size=0,
            max_size=self._max_connections,
            timeout=CONNECT_TIMEOUT,
            command_timeout=WRITE_TIMEOUT_SECONDS,
        )
        await self._pool

    @contextlib.asynccontextmanager
    async def _connection(self, seconds: float | None = None) -> AsyncIterator[Any]:
        """A pooled connection for one statement, checkout and all within `seconds` (the readers'
        bound by default); past it the connection is dropped and the caller gets ArchiveUnavailable."""
        seconds = self._read_timeout if seconds is None else seconds
        with _unavailable():
            deadline = asyncio.get_running_loop().time() + seconds
            connection = await self._pool.acquire(timeout=seconds)
            try:
                async with asyncio.timeout_at(deadline):
                    yield connection
            except TimeoutError:
                connection.terminate()
                raise
            finally:
                await self._pool.release(connection)

    async def check_schema(self) -> None:
        async with self._connection() as connection:
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
        """The session's record (written only if it changed) and `events` (in order, from where the
        archive stopped), in one statement. Events already there are left as they are; if any of
        them differs, nothing is written and ArchiveConflict says which."""
        async with self._connection(WRITE_TIMEOUT_SECONDS) as connection:
            conflicts = await connection.fetch(
                """WITH incoming AS (
                       SELECT * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::bigint[])
                           AS i (seq, type, data, ts_us)
                   ), conflicts AS (
                       SELECT i.seq FROM incoming i JOIN tokentail_events e
                           ON e.namespace = $1 AND e.session_id = $2 AND e.seq = i.seq
                       WHERE e.type <> i.type OR e.data <> i.data
                   ), saved AS (
                       INSERT INTO tokentail_sessions AS s
                           (namespace, session_id, tenant, record, last_event_id, archived_at)
                       SELECT $1, $2, $7, $8, $9, $10 WHERE NOT EXISTS (SELECT FROM conflicts)
                       ON CONFLICT (namespace, session_id) DO UPDATE SET record = EXCLUDED.record,
                           last_event_id = GREATEST(s.last_event_id, EXCLUDED.last_event_id),
                           archived_at = EXCLUDED.archived_at
                       WHERE s.record IS DISTINCT FROM EXCLUDED.record OR s.last_event_id < EXCLUDED.last_event_id
                   ), stored AS (
                       INSERT INTO tokentail_events (namespace, session_id, seq, type, data, ts_us)
                       SELECT $1, $2, * FROM incoming WHERE NOT EXISTS (SELECT FROM conflicts)
                       ON CONFLICT DO NOTHING
                   )
                   SELECT seq FROM conflicts ORDER BY seq LIMIT 20""",
                self._namespace,
                session_id,
                [event.seq for event in events],
                [event.type.decode() for event in events],
                [event.data.decode() for event in events],
                [event.ts_us for event in events],
                tenant,
                record,
                last_event_id,
                time.time(),
            )
        if conflicts:
            raise ArchiveConflict(session_id, [row["seq"] for row in conflicts])

    async def session(self, session_id: str) -> ArchivedSession | None:
        """The session's record, and its last id: its record's, or its last event's if later (a record
        from before its last events), so that a session brought back never gives an id out again."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                """SELECT tenant, record, GREATEST(last_event_id, (
                       SELECT max(seq) FROM tokentail_events e WHERE e.namespace = $1 AND e.session_id = $2
                   )) AS last_event_id
                   FROM tokentail_sessions WHERE namespace = $1 AND session_id = $2""",
                self._namespace,
                session_id,
            )
        return ArchivedSession(row["tenant"], row["record"], row["last_event_id"]) if row is not None else None

    async def read(self, session_id: str, after: int, count: int, before: int | None = None) -> list[StoredEvent]:
        """Events with ids after `after` (and before `before`), oldest first, at most `count`."""
        async with self._connection() as connection:
            rows = await connection.fetch(
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
        async with self._connection() as connection:
            return await connection.fetchval(  # type: ignore[no-any-return]
                "SELECT min(seq) FROM tokentail_events WHERE namespace = $1 AND session_id = $2",
                self._namespace,
                session_id,
            )

    async def delete(self, session_id: str) -> None:
        async with self._connection() as connection:
            await connection.execute(
                "DELETE FROM tokentail_sessions WHERE namespace = $1 AND session_id = $2", self._namespace, session_id
            )

    async def forget_before(self, archived_before: float) -> int:
        """Delete the sessions last archived before this Unix time (archive retention); how many."""
        async with self._connection(WRITE_TIMEOUT_SECONDS) as connection:
            status = await connection.execute(
                "DELETE FROM tokentail_sessions WHERE namespace = $1 AND archived_at < $2",
                self._namespace,
                archived_before,
            )
        return int(status.rsplit(" ", 1)[-1])
