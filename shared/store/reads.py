"""The session store's reads: session records, stream positions and events, as the gateway and
the worker read them. What changes a session (queue, start, append, end) is a Lua script, run by
the write side (shared/store/writes.py).

With an archive (shared/store/archive.py), what Redis no longer holds is read from it: a session whose
Redis copy expired, and the events before the first its stream keeps. Redis is asked first, and the
archive only for what Redis lacks, so a live stream never waits on Postgres.
"""

import functools
import json
import operator
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, cast

from redis.asyncio import RedisCluster

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.connections.round_trips import round_trips
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys, SessionKeys
from tokentail.shared.vocabulary.errors import SessionExpired, SessionNotFound
from tokentail.shared.vocabulary.events import EventType
from tokentail.shared.vocabulary.records import PUBLIC_TENANT, RunRecord, SessionRecord
from tokentail.shared.vocabulary.run_log import RunLog


class StoredEvent(NamedTuple):
    seq: int
    type: bytes
    data: bytes  # compact JSON, forwarded to clients as it is
    ts_us: int  # Redis time of the append, in microseconds


# A StoredEvent of (seq, type, data, ts), built by tuple.__new__ without the Python-level __new__
# that calling the class (or `_make`) runs: a third of what parsing an entry costs.
stored_event: Callable[[tuple[int, bytes, bytes, int]], StoredEvent] = functools.partial(tuple.__new__, StoredEvent)


class ForkSource(NamedTuple):
    """What a fork copies from its source, read at one instant (shared/store/lua/fork_session.lua)."""

    session: SessionRecord
    runs: dict[str, str]  # run id -> its record as stored, of every run of the source
    events: list[StoredEvent]  # as stored (a `run.completed` without its output, which its record keeps)
    steps: dict[bytes, bytes]  # the steps hash of the session's active run (its own lane's): record_step.lua


# Published on a session's channel (named like its stream key) when it is deleted; every other
# message there is an event (lib/events.lua's add_event).
SESSION_GONE = b"gone"


# A stream entry as XRANGE sends it: `[b"<seq>-0", [b"type", type, b"data", data, b"ts", ts]]`, its
# fields in the order lib/events.lua's add_event writes them (lists, as the reply parsers make them).
Entry = list[Any]
ENTRY_FIELDS = operator.itemgetter(1)  # of an entry: its fields
FIELD_TYPE, FIELD_DATA = operator.itemgetter(1), operator.itemgetter(3)  # of its fields: the event's type, data


def entry_seq(entry: Entry) -> int:
    """The id of the event an entry holds: its stream id's first part."""
    return int(entry[0].partition(b"-")[0])


def parse_raw_entries(entries: Sequence[Entry]) -> list[StoredEvent]:
    """The events that entries as Redis sends them (`Entry`) hold."""
    new = stored_event
    return [
        new((int(entry_id.partition(b"-")[0]), fields[1], fields[3], int(fields[5]))) for entry_id, fields in entries
    ]


def entry_of(event: StoredEvent) -> Entry:
    """An event as XRANGE would send its entry (one the archive read, for a reader of entries)."""
    return [b"%d-0" % event.seq, [b"type", event.type, b"data", event.data, b"ts", b"%d" % event.ts_us]]


def with_output(data: bytes, output: str) -> bytes:
    """`run.completed` data as clients get it: the stored event leaves the output to the run record."""
    if b'"output":' in data:  # stored by a version that kept it in the event too
        return data
    return data[:-1] + b',"output":' + compact_json(output).encode() + b"}"


# Fields of a run record that hold any JSON: stored as strings, which the Lua scripts do not
# decode (their cjson would turn [] into {} and large integers into floats).
OPAQUE_RUN_FIELDS = ("params", "asked", "answers", "trace", "steers")


def decode_run(raw: bytes | str) -> RunRecord:
    record = json.loads(raw)
    for field in OPAQUE_RUN_FIELDS:
        if isinstance(record.get(field), str):
            record[field] = json.loads(record[field])
    return RunRecord.model_validate(record)


class Step(NamedTuple):
    """A step a run recorded, as its steps hash holds it (record_step.lua)."""

    value: str  # its result, JSON
    seq: int | None  # the last event id before it (None: recorded before steps kept theirs)


_STEP_SEQ = b"@"  # a steps hash's field `@<step key>`: that step's seq (record_step.lua)
_STEPS_TOTALS = (b"seq", b"bytes")  # and its last step's seq, and its steps' total size


def recorded_steps(steps_hash: Mapping[bytes, bytes]) -> dict[str, Step]:
    """The steps of a steps hash (record_step.lua), by step key, without the fields beside them."""
    return {
        key.decode(): Step(value.decode(), int(seq) if (seq := steps_hash.get(_STEP_SEQ + key)) is not None else None)
        for key, value in steps_hash.items()
        if key not in _STEPS_TOTALS and not key.startswith(_STEP_SEQ)
    }


def steps_hash_of(steps: Mapping[str, Step]) -> list[str]:
    """A steps hash holding `steps` (each with its seq), as name, value pairs: what a fork's run goes on
    with (fork_session.lua)."""
    if not steps:
        return []
    seqs = [step.seq for step in steps.values() if step.seq is not None]
    fields = [
        *((key, step.value) for key, step in steps.items()),
        *((f"@{key}", str(step.seq)) for key, step in steps.items() if step.seq is not None),
        ("seq", str(max(seqs, default=0))),
        ("bytes", str(sum(len(step.value.encode()) for step in steps.values()))),
    ]
    return [item for pair in fields for item in pair]


def as_kept(steps_hash: Mapping[bytes, bytes]) -> str:
    """A steps hash as lib/runs.lua's end_run keeps it, for a run that ended: flat, a JSON list."""
    return json.dumps([item.decode() for pair in steps_hash.items() for item in pair])


async def kept_steps(redis: AnyRedis, keys: SessionKeys, run_ids: list[str]) -> dict[str, dict[bytes, bytes] | None]:
    """The steps each of `run_ids` (runs of the session of `keys` that ended) recorded, as their lane's
    steps hash was at their end (lib/runs.lua's end_run keeps them); None for a run whose steps are
    not kept (ended before they were, or its session was brought back from the archive)."""
    if not run_ids:
        return {}
    kept = await cast(Awaitable[list[bytes | None]], redis.hmget(keys.kept_steps, run_ids))
    steps: dict[str, dict[bytes, bytes] | None] = {}
    for run_id, raw in zip(run_ids, kept, strict=True):
        flat = [item.encode() for item in json.loads(raw) or []] if raw is not None else None  # ({}: cjson's [])
        steps[run_id] = None if flat is None else dict(zip(flat[::2], flat[1::2], strict=True))
    return steps


async def lane_steps(redis: AnyRedis, lanes: Sequence[SessionKeys]) -> list[dict[bytes, bytes]]:
    """The steps hashes of the runs going in `lanes` (lanes of one session: one slot), in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for keys in lanes:
            pipe.hgetall(keys.steps)
        return cast(list[dict[bytes, bytes]], await pipe.execute())


async def read_run(redis: AnyRedis, keys: SessionKeys, run_id: str) -> RunRecord | None:
    """A run's record, or None if the session has no such run."""
    raw = await cast(Awaitable[bytes | None], redis.hget(keys.runs, run_id))
    return decode_run(raw) if raw is not None else None


async def read_runs_of(redis: AnyRedis, keys: SessionKeys, run_ids: Sequence[str]) -> list[RunRecord | None]:
    """Runs of one session, by id, in one command (None for a run it has no record of)."""
    raws = await cast(Awaitable[list[bytes | None]], redis.hmget(keys.runs, list(run_ids)))
    return [decode_run(raw) if raw is not None else None for raw in raws]


async def read_runs(redis: AnyRedis, runs: Sequence[tuple[SessionKeys, str]]) -> list[RunRecord | None]:
    """Runs of any sessions, (a session's keys, a run id) each, in one round trip (None as `read_run`)."""
    async with redis.pipeline(transaction=False) as pipe:
        for keys, run_id in runs:
            pipe.hget(keys.runs, run_id)
        raws = await pipe.execute()
    return [decode_run(raw) if raw is not None else None for raw in raws]


async def active_run_id(redis: AnyRedis, keys: SessionKeys) -> str | None:
    """The session's active run (queued or running), if it has one."""
    active = await cast(Awaitable[bytes | None], redis.hget(keys.meta, "active_run"))
    return active.decode() if active else None


# A stream entry as redis-py's XREAD and XRANGE give it: its id, and its fields by name.
ParsedEntry = tuple[bytes, dict[bytes, bytes]]


async def follow_stream(redis: AnyRedis, keys: SessionKeys, after: str, count: int, block_ms: int) -> list[ParsedEntry]:
    """For a worker that follows its children (worker/run/children.py): the session's entries after
    stream id `after` (at most `count`), waiting up to `block_ms` for one if there is none yet."""
    read = await redis.xread({keys.events: after}, count=count, block=block_ms)
    return [entry for _, entries in (read.items() if isinstance(read, dict) else read) for entry in entries]


async def stream_from(redis: AnyRedis, keys: SessionKeys, start: str, count: int) -> list[ParsedEntry]:
    """The session's entries from stream id `start` (inclusive; `(<id>`: after it), at most `count`:
    what a worker reads of its run's events since it was queued (its inline children's)."""
    return cast(list[ParsedEntry], await redis.xrange(keys.events, min=start, max="+", count=count))


async def steer_texts(redis: AnyRedis, keys: SessionKeys) -> dict[bytes, bytes]:
    """The session's steered hash (`with_steer_texts` puts its texts back in the runs' records)."""
    return await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.steered))


async def steers_waiting(redis: AnyRedis, keys: SessionKeys) -> bool:
    """Whether steers wait in the session's list for its running run to take them in."""
    return bool(await redis.exists(keys.steers))


async def archived_through(redis: AnyRedis, keys: SessionKeys) -> int:
    """The last event of the session the archive holds, as its meta says (0: none yet)."""
    return int(await cast(Awaitable[bytes | None], redis.hget(keys.meta, "archived")) or 0)


async def is_gone(redis: AnyRedis, keys: SessionKeys) -> bool:
    """Whether the session was deleted (or expired with no archive): its tombstone is there."""
    return bool(await redis.exists(keys.gone))


def with_steer_texts(runs: Iterable[RunRecord], steered: Mapping[bytes, bytes] | list[bytes]) -> None:
    """Put back the texts of the steers `runs` took in, from the session's steered hash (a dict, or
    flat as HGETALL sends it): a run's record keeps only their ids and places, so that taking one in
    costs the same however many came before (lib/steers.lua). A text Redis no longer has is empty."""
    if isinstance(steered, list):
        steered = dict(zip(steered[::2], steered[1::2], strict=True))
    for run in runs:
        for steer in run.steers:
            if steer.input is None:
                steer.input = steered.get(b"i:" + steer.steer_id.encode(), b"").decode()


def without_steer_texts(runs: Iterable[RunRecord]) -> bool:
    """Whether any of `runs` took in a steer whose text its record does not hold (with_steer_texts)."""
    return any(steer.input is None for run in runs for steer in run.steers)


def add_steps(run: RunRecord, steps_hash: list[bytes]) -> None:
    """Add to `run` the steps it recorded, from the session's steps hash as HGETALL sends it (flat;
    see record_step.lua): step keys and their results, `seq`, `bytes` and each step's seq (`@<key>`)."""
    fields = dict(zip(steps_hash[::2], steps_hash[1::2], strict=True))
    if b"seq" in fields:
        run.step_seq = int(fields[b"seq"])
    run.steps.update((key, step.value) for key, step in recorded_steps(fields).items())


def branch_kept_seconds(settings: Settings) -> int:
    """How long a chat's branch (`SessionKeys.branch`) is kept past its last use: as long as a
    session is known after its last run, tombstone included."""
    return settings.session_ttl_seconds + settings.tombstone_ttl_seconds


def compact_json(value: object) -> str:
    """`value` as the store writes JSON: compact, and never NaN or Infinity, which are not JSON (a
    reader's parser would refuse the event): a ValueError instead."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class ArchivedSession:
    """What the archive holds of a session besides its events."""

    __slots__ = ("last_event_id", "record", "tenant")

    def __init__(self, tenant: str, record: str, last_event_id: int) -> None:
        self.tenant = tenant
        self.record = record
        self.last_event_id = last_event_id


class SessionArchive(Protocol):
    """What the store reads of the archive, and a deletion asks of it (shared/store/archive.py's `Archive`)."""

    async def session(self, session_id: str) -> ArchivedSession | None: ...

    async def read(self, session_id: str, after: int, count: int, before: int | None = None) -> list[StoredEvent]: ...

    async def first_seq(self, session_id: str) -> int | None: ...

    async def delete(self, session_id: str) -> None: ...


# What says whether a session is active: its last seq given out, its active run, its child runs going.
_ACTIVITY = ("seq", "active_run", "children")


class SessionStore:
    def __init__(self, redis: AnyRedis, settings: Settings, archive: SessionArchive | None = None) -> None:
        """`redis`: the sessions' Redis (a `RedisCluster` with `settings.redis_cluster`); `archive`:
        where sessions are kept once Redis forgot them, if anywhere."""
        self.redis = redis
        self.round_trips = round_trips(redis)  # reads joined with the process's other commands
        self.settings = settings
        self.archive = archive
        self.keys = Keys(settings.key_prefix)
        # Catch-up reads take stream entries as Redis sends them, not as redis-py's dict per entry
        # (10,000 events read in 8 ms instead of 14): the round trips apply no reply parser; in
        # redis-py's pipelines (`archivable`, `fork_source`), on one server, the command is named in
        # bytes, which redis-py's parsers are not looked up by; a cluster client needs the name to
        # route the command, so its parser for XRANGE is the identity.
        self._xrange: str | bytes = b"XRANGE"
        self._xrevrange: str | bytes = b"XREVRANGE"
        if isinstance(redis, RedisCluster):
            for command in ("XRANGE", "XREVRANGE"):
                redis.set_response_callback(command, lambda response, **options: response)
            self._xrange, self._xrevrange = "XRANGE", "XREVRANGE"

    async def get_session(self, session_id: str) -> SessionRecord:
        keys = self.keys.session(session_id)
        fields, runs_json, gone, top, steered = await self.round_trips(
            ("HGETALL", keys.meta),
            ("HVALS", keys.runs),
            ("EXISTS", keys.gone),
            self._top(keys.events),
            ("HGETALL", keys.steered),
        )
        # As Redis sent it (the round trips apply no reply callback): a list of field, value, ...
        meta = dict(zip(fields[::2], fields[1::2], strict=True))
        if not meta:
            if gone:  # deleted (or expired with no archive)
                raise SessionExpired(session_id)
            if (archived := await self._archived(session_id)) is not None:
                return SessionRecord.model_validate_json(archived.record)
            raise SessionNotFound(session_id)
        return _session_record(session_id, meta, runs_json, top, steered)

    async def archivable(
        self, session_id: str, after: int, count: int
    ) -> tuple[SessionRecord | None, list[StoredEvent]]:
        """For the archiver, from Redis only: the session's record and its events after `after` (at
        most `count`, with their outputs), read at one instant (MULTI), so that the record describes
        every event read with it. None for a session Redis does not hold."""
        keys = self.keys.session(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.meta)
            pipe.hvals(keys.runs)
            pipe.execute_command(self._xrange, keys.events, after + 1, "+", b"COUNT", count)
            pipe.execute_command(*self._top(keys.events))
            pipe.hgetall(keys.steered)
            meta, runs_json, entries, top, steered = await pipe.execute()
        if not meta:
            return None, []
        session = _session_record(session_id, meta, runs_json, top, steered)  # the archive keeps the texts
        return session, _with_outputs_of(parse_raw_entries(entries), {run.run_id: run.output for run in session.runs})

    async def fork_source(self, session_id: str, after: int) -> ForkSource | None:
        """The session's record, events 1..`after` (fewer: trimmed) and active run's steps, in one MULTI; a
        Redis Cluster takes none: the steps come before the records, which say whose they are (branching.py)."""
        keys = self.keys.session(session_id)
        async with self.redis.pipeline(transaction=not self.settings.redis_cluster) as pipe:
            pipe.hgetall(keys.meta)
            pipe.hgetall(keys.steps)
            pipe.hgetall(keys.runs)
            pipe.execute_command(self._xrange, keys.events, 1, after)  # (`<after>-1` too: lib/seqs.lua)
            pipe.execute_command(*self._top(keys.events))
            pipe.hgetall(keys.steered)
            meta, steps, runs, entries, top, steered = await pipe.execute()
        if not meta:
            return None
        stored = {run_id.decode(): record.decode() for run_id, record in runs.items()}
        session = _session_record(session_id, meta, list(runs.values()), top, steered)
        for run in session.runs:  # the fork has no steered hash of its own: its records keep the texts
            if run.steers:
                record = json.loads(stored[run.run_id])
                record["steers"] = compact_json([steer.model_dump() for steer in run.steers])
                stored[run.run_id] = compact_json(record)
        return ForkSource(session, stored, parse_raw_entries(entries) if after else [], steps)

    async def get_run(self, session_id: str, run_id: str, steps: bool = False) -> RunRecord | None:
        """The run's record; with `steps`, and the steps it recorded (while it is active)."""
        keys = self.keys.session(session_id)
        if not steps:
            return await read_run(self.redis, keys, run_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.runs, run_id)
            pipe.hgetall(keys.steps)
            raw, steps_hash = await pipe.execute()
        if raw is None:
            return None
        run = decode_run(raw)
        add_steps(run, [item for pair in steps_hash.items() for item in pair])
        return run

    async def session_owner(self, session_id: str) -> str | None:
        """The tenant owning the session, or the gone session its tombstone remembers; None if
        neither is known (no such session, or a tombstone from before tombstones named owners)."""
        keys = self.keys.session(session_id)
        (tenant, created), gone = await self.round_trips(
            ("HMGET", keys.meta, "tenant", "created_at"), ("GET", keys.gone)
        )
        if created is not None:
            return tenant.decode() if tenant else PUBLIC_TENANT  # sessions from before tenants existed
        if gone:
            return gone.decode() if gone != b"1" else None
        archived = await self._archived(session_id)
        return archived.tenant if archived is not None else None

    async def stream_position(self, session_id: str) -> tuple[int, bool]:
        """The last event id given out, and whether a run is queued or running."""
        keys = self.keys.session(session_id)
        (seq, active, children), top = await self.round_trips(("HMGET", keys.meta, *_ACTIVITY), self._top(keys.events))
        if seq is None and active is None and not await self.redis.exists(keys.meta):
            if await self.redis.exists(keys.gone):
                raise SessionExpired(session_id)
            if (archived := await self._archived(session_id)) is not None:
                return archived.last_event_id, False
            raise SessionNotFound(session_id)
        return last_seq(seq, top), bool(active) or bool(children)  # (a child run going: shared/store/keys.py)

    async def stream_start(self, session_id: str, after: int = 0) -> tuple[int, bool, int | None]:
        """`stream_position` and `first_available` in one round trip: what a client opening the
        stream after `after` needs to know first. The archive is asked for its first id only when
        that client needs events Redis no longer holds: a reconnect inside Redis's range never waits
        on Postgres, nor fails with it."""
        keys = self.keys.session(session_id)
        (seq, active, children), oldest, top = await self.round_trips(
            ("HMGET", keys.meta, *_ACTIVITY),
            (self._xrange, keys.events, 1, "+", b"COUNT", 1),
            self._top(keys.events),
        )
        entries = parse_raw_entries(oldest)
        first = entries[0].seq if entries else None
        if seq is None and active is None:
            last, running = await self.stream_position(session_id)  # raises for a missing or gone session
            active = running  # (or found it in the archive)
        else:
            last = last_seq(seq, top)
        hot_from = first if first is not None else last + 1  # the first id Redis can serve
        if self.archive is not None and hot_from > 1 and (after + 1 < hot_from or after > last):
            first = await self.archive.first_seq(session_id) or first
        return last, bool(active) or bool(children), first

    async def read(self, session_id: str, after: int, count: int) -> list[StoredEvent]:
        """Events with ids after `after`, oldest first, at most `count`, as clients get them: from
        Redis, or from the archive for those Redis no longer holds."""
        events = await self.read_hot(session_id, after, count)
        if self.archive is None or (events and events[0].seq == after + 1):
            return events
        return await self._with_archived(session_id, after, count, events)

    async def read_entries(self, session_id: str, after: int, count: int) -> list[Entry]:
        """What `read` returns, as the stream's entries (`Entry`) rather than events: for a reader that
        frames them as Redis sent them, with no object made of each (gateway/reading/feed.py). Each
        `run.completed` has its output added back (`with_outputs`), in its entry. Where the archive
        may hold some (Redis's first entry is not the next id), the events `read` adds from it come
        as entries too."""
        (entries,) = await self.round_trips(self._range_command(session_id, after, count))
        if self.archive is None or (entries and entry_seq(entries[0]) == after + 1):
            return await self._entries_with_outputs(session_id, entries)
        events = await self.with_outputs(session_id, parse_raw_entries(entries))
        return [entry_of(event) for event in await self._with_archived(session_id, after, count, events)]

    async def _with_archived(
        self, session_id: str, after: int, count: int, events: list[StoredEvent]
    ) -> list[StoredEvent]:
        """`read`'s events, given Redis's (`events`), which do not start at `after` + 1: with those
        that the archive holds before them."""
        assert self.archive is not None
        if not events and await self.redis.exists(self.keys.session(session_id).events):
            return events  # at the end of the stream
        archived = await self.archive.read(session_id, after, count, before=events[0].seq if events else None)
        if not events or len(archived) == count:
            return archived
        if not archived or archived[-1].seq + 1 != events[0].seq:
            return events  # a hole the archive does not fill (trimmed before it was on): the reader says so
        return (archived + events)[:count]  # with Redis's first events: a short read still means the end

    async def read_hot(self, session_id: str, after: int, count: int) -> list[StoredEvent]:
        """As `read`, from Redis only."""
        return await self.with_outputs(session_id, await self._range(session_id, after, count))

    def _top(self, events_key: str) -> tuple[Any, ...]:
        """The command that reads a stream's last entry (see `last_seq`)."""
        return (self._xrevrange, events_key, "+", "-", b"COUNT", 1)

    async def _archived(self, session_id: str) -> ArchivedSession | None:
        return await self.archive.session(session_id) if self.archive is not None else None

    async def with_outputs(self, session_id: str, events: list[StoredEvent]) -> list[StoredEvent]:
        """`events` with the output of each `run.completed` added back from its run's record."""
        run_ids = [json.loads(event.data)["run_id"] for event in events if event.type == _RUN_COMPLETED]
        if not run_ids:
            return events
        (records,) = await self.round_trips(("HMGET", self.keys.session(session_id).runs, *run_ids))
        outputs = {
            run_id: json.loads(record).get("output") for run_id, record in zip(run_ids, records, strict=True) if record
        }
        return _with_outputs_of(events, outputs)

    async def _entries_with_outputs(self, session_id: str, entries: list[Entry]) -> list[Entry]:
        """`entries`, each `run.completed` given its output (`with_outputs`, on those alone), in place.
        Whether there is one is asked in C: a read of 500 entries makes no object for the others."""
        if _RUN_COMPLETED not in map(FIELD_TYPE, map(ENTRY_FIELDS, entries)):
            return entries
        completed = [entry for entry in entries if entry[1][1] == _RUN_COMPLETED]
        events = await self.with_outputs(session_id, parse_raw_entries(completed))
        for entry, event in zip(completed, events, strict=True):
            entry[1][3] = event.data
        return entries

    def _range_command(self, session_id: str, after: int, count: int) -> tuple[Any, ...]:
        return (self._xrange, self.keys.session(session_id).events, after + 1, "+", b"COUNT", count)

    async def _range(self, session_id: str, after: int, count: int) -> list[StoredEvent]:
        (entries,) = await self.round_trips(self._range_command(session_id, after, count))
        return parse_raw_entries(entries)

    async def partial_text(self, session_id: str, run: RunRecord) -> str:
        """The text `run` has streamed so far, as its clients keep it (shared/vocabulary/run_log.py)."""
        if run.status == "waiting" and run.questions:
            return run.questions[-1].output_before  # of those asked at once, the last saw the most
        log = await self.run_log(session_id, run)
        return log.text if log is not None else ""

    async def run_log(self, session_id: str, run: RunRecord) -> RunLog | None:
        """`run`'s events as its clients keep them; None when the stream no longer holds its start."""
        if run.queued_seq is None:
            return None
        events: list[tuple[int, str, str | bytes]] = []
        after = run.queued_seq - 1
        while batch := await self._range(session_id, after, 1000):
            if not events and batch[0].seq != run.queued_seq:
                return None  # trimmed
            events.extend((event.seq, event.type.decode(), event.data) for event in batch)
            after = batch[-1].seq
        return RunLog.of(run.run_id, events) if events else None


_RUN_COMPLETED = EventType.RUN_COMPLETED.encode()


def _with_outputs_of(events: list[StoredEvent], outputs: dict[str, str | None]) -> list[StoredEvent]:
    """`events` with each `run.completed` given its run's output, from `outputs` by run id."""
    return [
        event._replace(data=with_output(event.data, outputs.get(json.loads(event.data)["run_id"]) or ""))
        if event.type == _RUN_COMPLETED
        else event
        for event in events
    ]


def last_seq(floor: bytes | None, top: list[Any]) -> int:
    """The last event id a session gave out: its stream's last entry (`top`, as XREVRANGE ... COUNT 1
    sends it), or the meta's `seq` where that is higher (a floor: see lib/seqs.lua)."""
    return max(int(top[0][0].split(b"-", 1)[0]) if top else 0, int(floor or 0))


def runs_in_order(runs_json: list[bytes]) -> list[RunRecord]:
    """A session's run records (its runs hash's values), in the order they were queued."""
    return sorted((decode_run(raw) for raw in runs_json), key=lambda r: r.queued_seq or 0)


def _session_record(
    session_id: str,
    meta: dict[bytes, bytes],
    runs_json: list[bytes],
    top: list[Any],
    steered: Mapping[bytes, bytes] | list[bytes],
) -> SessionRecord:
    """A session's record from its meta hash, run records and steered hash, as Redis holds them."""
    runs = runs_in_order(runs_json)
    with_steer_texts(runs, steered)
    return SessionRecord(
        session_id=session_id,
        created_at=float(meta[b"created_at"]),
        tenant=meta[b"tenant"].decode() if b"tenant" in meta else PUBLIC_TENANT,
        model=meta[b"model"].decode() or None,
        agent=meta[b"agent"].decode() or None,
        params=json.loads(meta[b"params"]),
        metadata=json.loads(meta[b"metadata"]),
        webhook=meta[b"webhook"].decode() if b"webhook" in meta else None,
        user=meta[b"user"].decode() if b"user" in meta else None,
        lineage=json.loads(meta[b"lineage"]) if b"lineage" in meta else [],
        last_event_id=last_seq(meta.get(b"seq"), top),
        active_run_id=meta.get(b"active_run", b"").decode() or None,
        dispatch=meta.get(b"dispatch", b"").decode() or None,
        runs=runs,
    )
