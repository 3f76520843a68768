"""The session store: every read and write of session streams and records in Redis.

Writes that must be atomic (queue a run, start it, append to it) are Lua scripts in `lua/`; each
is loaded with `lua/lib.lua` in front, the vocabulary they share. Scripts that queue or end runs
take the same leading keys and arguments (`SessionStore._run_script_args`). A script touches one
session's keys only (plus arq's, when the queue shares the Redis), so the sessions' Redis may be a
Cluster; with the queue apart, jobs go through the session's outbox (`_push_outbox`), and the
leases index is kept beside the queue (shared/lease_index.py).
"""

import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple, Protocol, cast

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from shared.errors import LeaseLost, RunConflict, SessionExpired, SessionNotFound
from shared.events import CANCELLED_BY_REQUEST, Ending, EventType, RunCompleted, RunFailed, event_type_of
from shared.jobs import JOB_TTL_MS, RUN_JOB
from shared.keys import Keys
from shared.lease_index import LeaseIndex
from shared.lua import load_script
from shared.records import PUBLIC_TENANT, Multitask, RunRecord, SessionRecord
from shared.redis_clients import AnyRedis
from shared.settings import Settings


class StoredEvent(NamedTuple):
    seq: int
    type: bytes
    data: bytes  # compact JSON, forwarded to clients as it is
    ts_us: int  # Redis time of the append, in microseconds


class StartVerdict(StrEnum):
    """What a worker that claimed a run does with it (start_run.lua)."""

    RUN = ""
    CANCEL = "cancel"  # a cancel is pending: end it cancelled
    EXHAUSTED = "exhausted"  # too many attempts: end it failed


class Renewal(IntEnum):
    LOST = 0  # another worker holds the run now, or it ended: stop
    RENEWED = 1
    CANCEL_PENDING = 2  # renewed, and a cancel of the run is pending


class Requeue(StrEnum):
    REQUEUED = "requeued"
    RENEWED = "renewed"  # the holder renewed in time: nothing to take over
    CLEARED = "cleared"  # no active run behind the entry (deleted session, ended run), or another reaper's
    NOT_HOLDER = "not_holder"  # a hand-over by a worker that no longer holds the lease
    PUSHED = "dispatch"  # no lease, but a job the outbox held: pushed (again) to the queue


class Look(NamedTuple):
    """What a reaper found at a session, and when to look again if its lease was renewed."""

    outcome: Requeue
    lease_until: int | None = None


class Cancel(StrEnum):
    SIGNALLED = "signalled"  # its worker was told, and writes `run.cancelled`
    CANCELLED = "cancelled"  # no worker held it: it ended at once
    IDLE = "idle"  # no run was active


class ScriptCall(Protocol):
    async def __call__(self, keys: list[Any], args: list[Any]) -> Any: ...


# Published on a session's channel (named like its stream key) when it is deleted; every other
# message there is an event (lib.lua's add_event).
SESSION_GONE = b"gone"


def parse_raw_entries(entries: Sequence[list[Any]]) -> list[StoredEvent]:
    """Entries as Redis sends them: `[id, [b"type", type, b"data", data, b"ts", ts]]`, in the order
    lib.lua's add_event writes the fields."""
    # tuple.__new__ builds the named tuple without the Python-level __new__ that calling the class
    # (or `_make`) runs: a third of what parsing an entry costs.
    new, cls = tuple.__new__, StoredEvent
    return [
        new(cls, (int(entry_id.partition(b"-")[0]), fields[1], fields[3], int(fields[5])))
        for entry_id, fields in entries
    ]


def encode_run(run: RunRecord) -> str:
    # The Lua scripts decode and re-encode run records with cjson, which turns [] into {} and large
    # integers into floats: params travel through them as an opaque string.
    record = run.model_dump(mode="json")
    record["params"] = _compact(record["params"])
    return _compact(record)


def stored_ending(ending: Ending) -> tuple[str, str]:
    """A terminal event as the stream keeps it, and the fields its run record keeps (append.lua).
    A completed run's output is stored once, in its record; `with_output` adds it back for readers."""
    if isinstance(ending, RunCompleted):
        return ending.model_dump_json(exclude={"output"}), _compact({"output": ending.output, "usage": ending.usage})
    if isinstance(ending, RunFailed):
        return ending.model_dump_json(), _compact({"error": ending.error.model_dump()})
    return ending.model_dump_json(), _compact({"reason": ending.reason})


def with_output(data: bytes, output: str) -> bytes:
    """`run.completed` data as clients get it: the stored event leaves the output to the run record."""
    if b'"output":' in data:  # stored by a version that kept it in the event too
        return data
    return data[:-1] + b',"output":' + _compact(output).encode() + b"}"


def decode_run(raw: bytes | str) -> RunRecord:
    record = json.loads(raw)
    if isinstance(record.get("params"), str):
        record["params"] = json.loads(record["params"])
    return RunRecord.model_validate(record)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SessionStore:
    def __init__(
        self,
        redis: AnyRedis,
        settings: Settings,
        batched: Callable[[str], "ScriptCall"] | None = None,
        queue: Redis | None = None,
    ) -> None:
        """`redis`: the sessions' Redis (a `RedisCluster` with `settings.redis_cluster`); `queue`:
        the queue's, when it is apart (`settings.queue_redis_url`). `batched(script)`, if given,
        sends the scripts called per run and often (append, renew_lease) instead of calling them
        one by one: the worker batches them into pipelines (worker/pipelines.py)."""
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        if queue is None and isinstance(redis, RedisCluster):
            raise ValueError("a Redis Cluster cannot hold the job queue: give the queue's Redis")
        self.leases = LeaseIndex(queue or redis, settings)  # type: ignore[arg-type]
        # Catch-up reads take stream entries as Redis sends them, not as redis-py's dict per entry
        # (10,000 events read in 8 ms instead of 14): on one server, by naming the command in bytes,
        # which redis-py's reply parsers are not looked up by; a cluster client needs the name to
        # route the command, so its parser for XRANGE is the identity.
        self._xrange: str | bytes = b"XRANGE"
        if isinstance(redis, RedisCluster):
            redis.set_response_callback("XRANGE", lambda response, **options: response)
            self._xrange = "XRANGE"
        self._split = settings.split_queue
        # The queue's keys a script writes in the same step as the session's, when they share a
        # Redis: arq's queue, and the leases index, which the scripts then keep exact (lib.lua).
        self._index_keys = [] if self._split else [self.keys.lease_checks]
        self._queue_keys = [] if self._split else [self.keys.queue, *self._index_keys]

        def source(name: str) -> str:
            return load_script(name, cluster=settings.redis_cluster, split_queue=self._split)

        def script(name: str) -> Any:
            return redis.register_script(source(name))  # type: ignore[misc]  # a cluster client has it too

        self._create_session = script("create_session")
        self._delete_session = script("delete_session")
        self._queue_run = script("queue_run")
        self._start_run = script("start_run")
        self._append: ScriptCall = batched(source("append")) if batched else script("append")
        self._renew_lease: ScriptCall = batched(source("renew_lease")) if batched else script("renew_lease")
        self._requeue_run = script("requeue_run")
        self._cancel_run = script("cancel_run")

    def _run_script_args(self, session_id: str) -> tuple[list[str], list[str | int]]:
        """The keys and arguments every script that queues or ends runs starts with (lib.lua)."""
        keys = self.keys.session(session_id)
        return [keys.meta, keys.runs, keys.events, keys.lease, keys.gone, keys.pending, *self._queue_keys], [
            session_id,
            self.settings.stream_maxlen,
            self.settings.session_ttl_seconds,
            self.settings.tombstone_ttl_seconds,
            JOB_TTL_MS,
            self.keys.wake_channel,
            self.keys.arq_job(""),
            RUN_JOB,
        ]

    # -- gateway side ---------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord) -> None:
        """Create a session with no run yet; like a finished one, it expires if left unused."""
        keys = self.keys.session(session.session_id)
        fields = [item for pair in self._session_fields(session) for item in pair]
        args = [self.settings.session_ttl_seconds, self.settings.tombstone_ttl_seconds, session.tenant, *fields]
        await self._create_session(keys=[keys.meta, keys.gone], args=args)

    async def queue_run(
        self,
        session_id: str,
        run: RunRecord,
        *,
        multitask: Multitask = "reject",
        create: SessionRecord | None = None,
    ) -> bool:
        """Record `run`, append `run.queued` and queue its job; with `create`, make the session first.

        With a run already active, `multitask` decides (see queue_run.lua). True if the run was
        queued to start now, False if it waits in line behind the active one.
        """
        keys, args = self._run_script_args(session_id)
        fields = [item for pair in self._session_fields(create) for item in pair] if create else []
        queued = _compact({"run_id": run.run_id, "input": run.input})
        args += [run.run_id, encode_run(run), multitask, queued, "1" if create else "0", self.keys.cancel_channel]
        async with self._outbox(session_id):
            result = await self._queue_run(keys=keys, args=[*args, *fields])
        outcome = result[0].decode()
        if outcome == "ok":
            return bool(result[2] == b"started")
        if outcome == "conflict":
            raise RunConflict(session_id, result[1].decode())
        if outcome == "gone":
            raise SessionExpired(session_id)
        if outcome == "exists":
            raise RuntimeError(f"session id collision: {session_id}")
        raise SessionNotFound(session_id)

    async def get_session(self, session_id: str) -> SessionRecord:
        keys = self.keys.session(session_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.meta)
            pipe.hvals(keys.runs)
            pipe.exists(keys.gone)
            meta, runs_json, gone = await pipe.execute()
        if not meta:
            raise SessionExpired(session_id) if gone else SessionNotFound(session_id)
        runs = sorted((decode_run(raw) for raw in runs_json), key=lambda r: r.queued_seq or 0)
        return SessionRecord(
            session_id=session_id,
            created_at=float(meta[b"created_at"]),
            tenant=meta[b"tenant"].decode() if b"tenant" in meta else PUBLIC_TENANT,
            model=meta[b"model"].decode() or None,
            agent=meta[b"agent"].decode() or None,
            params=json.loads(meta[b"params"]),
            metadata=json.loads(meta[b"metadata"]),
            last_event_id=int(meta.get(b"seq", 0)),
            active_run_id=meta.get(b"active_run", b"").decode() or None,
            runs=runs,
        )

    async def session_owner(self, session_id: str) -> str | None:
        """The tenant owning the session, or the gone session its tombstone remembers; None if
        neither is known (no such session, or a tombstone from before tombstones named owners)."""
        keys = self.keys.session(session_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.meta, ["tenant", "created_at"])
            pipe.get(keys.gone)
            (tenant, created), gone = await pipe.execute()
        if created is not None:
            return tenant.decode() if tenant else PUBLIC_TENANT  # sessions from before tenants existed
        return gone.decode() if gone and gone != b"1" else None

    async def stream_position(self, session_id: str) -> tuple[int, bool]:
        """The last event id given out, and whether a run is queued or running."""
        keys = self.keys.session(session_id)
        seq, active = await cast(Awaitable[list[bytes | None]], self.redis.hmget(keys.meta, ["seq", "active_run"]))
        if seq is None and active is None and not await self.redis.exists(keys.meta):
            if await self.redis.exists(keys.gone):
                raise SessionExpired(session_id)
            raise SessionNotFound(session_id)
        return int(seq or 0), bool(active)

    async def first_available(self, session_id: str) -> int | None:
        """The oldest id still in the stream (older ones were trimmed), or None if it is empty."""
        oldest = await self._range(session_id, 0, 1)  # seqs start at 1: after 0 is from the start
        return oldest[0].seq if oldest else None

    async def read(self, session_id: str, after: int, count: int) -> list[StoredEvent]:
        """Events with ids after `after`, oldest first, at most `count`, as clients get them."""
        return await self.with_outputs(session_id, await self._range(session_id, after, count))

    async def with_outputs(self, session_id: str, events: list[StoredEvent]) -> list[StoredEvent]:
        """`events` with the output of each `run.completed` added back from its run's record."""
        ends = [i for i, event in enumerate(events) if event.type == _RUN_COMPLETED]
        if not ends:
            return events
        run_ids = [json.loads(events[i].data)["run_id"] for i in ends]
        records = await cast(
            Awaitable[list[bytes | None]], self.redis.hmget(self.keys.session(session_id).runs, run_ids)
        )
        completed = list(events)
        for i, record in zip(ends, records, strict=True):
            output = json.loads(record).get("output") if record else None
            completed[i] = events[i]._replace(data=with_output(events[i].data, output or ""))
        return completed

    async def _range(self, session_id: str, after: int, count: int) -> list[StoredEvent]:
        key = self.keys.session(session_id).events
        entries = await self.redis.execute_command(self._xrange, key, f"({after}-0", "+", b"COUNT", count)
        return parse_raw_entries(entries)

    async def partial_text(self, session_id: str, run: RunRecord) -> str:
        """The text the active attempt of `run` has streamed so far."""
        if run.started_seq is None:
            return ""
        parts: list[str] = []
        after = run.started_seq
        while batch := await self._range(session_id, after, 1000):
            parts.extend(
                json.loads(event.data)["text"] for event in batch if event.type == EventType.MESSAGE_DELTA.encode()
            )
            after = batch[-1].seq
        return "".join(parts)

    async def cancel_run(self, session_id: str) -> tuple[Cancel, str | None]:
        """Cancel the active run (see cancel_run.lua); what became of it, and its id."""
        keys, args = self._run_script_args(session_id)
        async with self._outbox(session_id):  # the run in line behind it may start now
            result = await self._cancel_run(keys=keys, args=[*args, self.keys.cancel_channel, CANCELLED_BY_REQUEST])
        outcome = result[0].decode()
        if outcome == "gone":
            raise SessionExpired(session_id)
        if outcome == "missing":
            raise SessionNotFound(session_id)
        return Cancel(outcome), result[1].decode() if len(result) > 1 else None

    async def delete_session(self, session: SessionRecord) -> None:
        """Delete the session (see delete_session.lua): its run's worker is fenced, its followers end."""
        keys = self.keys.session(session.session_id)
        await self._delete_session(
            keys=[keys.meta, keys.runs, keys.events, keys.lease, keys.pending, keys.gone, *self._index_keys],
            args=[session.tenant, self.settings.tombstone_ttl_seconds, session.session_id],
        )

    async def writable(self) -> None:
        """Raise as Redis would if it refuses writes now (out of memory, a read-only replica)."""
        await self.redis.set(self.keys.probe, 1, px=10_000)
        if self.leases.redis is not self.redis:
            await self.leases.redis.set(self.keys.probe, 1, px=10_000)

    @contextlib.asynccontextmanager
    async def _outbox(self, session_id: str) -> AsyncIterator[None]:
        """Around a script that may queue a job: with the queue apart, the job waits in the
        session's outbox; push it after the script, and leave an intent in the leases index
        before, so that a reaper pushes it if this process dies in between."""
        if not self._split:
            yield
            return
        intent = await self.leases.intend(session_id)
        yield
        await self._push_outbox(session_id)
        await self.leases.forget(intent)

    async def _push_outbox(self, session_id: str) -> None:
        dispatch = await self.redis.hget(self.keys.session(session_id).meta, "dispatch")  # type: ignore[misc]
        if dispatch:
            await self.leases.push(session_id, dispatch)

    @staticmethod
    def _session_fields(session: SessionRecord) -> list[tuple[str, str]]:
        return [
            ("created_at", repr(session.created_at)),
            ("tenant", session.tenant),
            ("model", session.model or ""),
            ("agent", session.agent or ""),
            ("params", _compact(session.params)),
            ("metadata", _compact(session.metadata)),
        ]

    # -- worker side ----------------------------------------------------------------------------

    async def start_run(
        self, session_id: str, run_id: str, lease_token: str, job_id: str
    ) -> tuple[RunRecord, StartVerdict] | None:
        """Claim the run under `lease_token` (appending `run.retrying` if it is a takeover, then
        `run.started`) and take job `job_id` out of arq's queue; None if it is not ours to run."""
        keys, args = self._run_script_args(session_id)
        args += [run_id, lease_token, self.settings.lease_ms, self.settings.max_attempts, job_id]
        if self._split:
            await self.leases.watch(session_id)  # first: a reaper must find every lease (lease_index.py)
        result = await self._start_run(keys=keys, args=args)
        if result[0] != b"ok":
            return None
        if self._split:
            await self.leases.take(job_id)
        return decode_run(result[2]), StartVerdict(result[3].decode())

    async def append(
        self,
        session_id: str,
        run_id: str,
        lease_token: str,
        events: Sequence[tuple[str, str]],
        append_id: str | None = None,
        ending: Ending | None = None,
    ) -> int:
        """Append `(type, data_json)` events under the run's lease, then the run's terminal event if
        it `ending`; returns the last seq. Sending the same `append_id` again (after a lost reply)
        appends nothing twice."""
        outcome = ""
        if ending is not None:
            stored, outcome = stored_ending(ending)
            events = [*events, (event_type_of(ending), stored)]
        keys, args = self._run_script_args(session_id)
        args += [run_id, lease_token, append_id or secrets.token_hex(8), outcome]
        for event_type, data in events:
            args += [event_type, data]
        try:
            seq = await self._append(keys=keys, args=args)
        except ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise LeaseLost(str(exc)) from None
            raise
        if ending is not None and self._split:
            # The run in line behind this one may be in the outbox now. Should this process die
            # first, the run's entry in the leases index (its lease, now gone) makes a reaper push it.
            await self._push_outbox(session_id)
        return int(seq)

    async def renew_lease(self, session_id: str, run_id: str, lease_token: str) -> Renewal:
        keys = self.keys.session(session_id)
        return Renewal(
            await self._renew_lease(
                keys=[keys.lease, keys.meta, *self._index_keys],
                args=[lease_token, self.settings.lease_ms, run_id, session_id],
            )
        )

    async def requeue_run(self, session_id: str, lease_token: str) -> Requeue:
        """Hand the session's running run, held under `lease_token`, to another worker (shutdown)."""
        return (await self._requeue(session_id, lease_token)).outcome

    async def look(self, session_id: str) -> Look:
        """A reaper's look at a session the leases index named: requeue its run if its lease ran
        out, push a job its outbox still holds, or find it renewed or with nothing to do."""
        return await self._requeue(session_id, "")

    async def _requeue(self, session_id: str, lease_token: str) -> Look:
        keys, args = self._run_script_args(session_id)
        args += [lease_token, secrets.token_hex(4)]
        result = await self._requeue_run(keys=keys, args=args)
        look = Look(Requeue(result[0].decode()))
        if look.outcome is Requeue.RENEWED:
            return look._replace(lease_until=int(result[1]))
        if self._split and len(result) > 1 and result[1]:
            await self.leases.push(session_id, result[1])
        return look


_RUN_COMPLETED = EventType.RUN_COMPLETED.encode()
