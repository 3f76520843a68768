"""The session store: every read and write of session streams and records in Redis.

Writes that must be atomic (queue a run, start it, append to it) are Lua scripts in `lua/`; each
is loaded with `lua/lib.lua` in front, the vocabulary they share. Scripts that queue or end runs
take the same leading keys and arguments (`SessionStore._run_script_args`).
"""

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from enum import IntEnum, StrEnum
from importlib import resources
from typing import Any, NamedTuple, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.errors import LeaseLost, RunConflict, SessionExpired, SessionNotFound
from shared.events import CANCELLED_BY_REQUEST, Ending, EventType, RunCompleted, RunFailed, event_type_of
from shared.jobs import JOB_TTL_MS, RUN_JOB
from shared.keys import Keys
from shared.records import PUBLIC_TENANT, Multitask, RunRecord, SessionRecord
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


class Cancel(StrEnum):
    SIGNALLED = "signalled"  # its worker was told, and writes `run.cancelled`
    CANCELLED = "cancelled"  # no worker held it: it ended at once
    IDLE = "idle"  # no run was active


class ScriptCall(Protocol):
    async def __call__(self, keys: list[Any], args: list[Any]) -> Any: ...


# Published on a session's channel (named like its stream key) when it is deleted; every other
# message there is an event (lib.lua's add_event).
SESSION_GONE = b"gone"


def load_script(name: str) -> str:
    lua = resources.files("shared").joinpath("lua")
    return lua.joinpath("lib.lua").read_text() + lua.joinpath(f"{name}.lua").read_text()


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
        self, redis: "Redis", settings: Settings, batched: Callable[[str], "ScriptCall"] | None = None
    ) -> None:
        """`batched(name)`, if given, sends the scripts called per run and often (append,
        renew_lease) instead of calling them one by one: the worker batches them into pipelines
        (worker/pipelines.py)."""
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._queue_run = redis.register_script(load_script("queue_run"))
        self._start_run = redis.register_script(load_script("start_run"))
        often = batched or (lambda name: redis.register_script(load_script(name)))
        self._append: ScriptCall = often("append")
        self._renew_lease: ScriptCall = often("renew_lease")
        self._requeue_run = redis.register_script(load_script("requeue_run"))
        self._cancel_run = redis.register_script(load_script("cancel_run"))
        self._expired_leases = redis.register_script(load_script("expired_leases"))

    def _run_script_args(self, session_id: str) -> tuple[list[str], list[str | int]]:
        """The keys and arguments every script that queues or ends runs starts with (lib.lua)."""
        keys = self.keys.session(session_id)
        return [
            keys.meta,
            keys.runs,
            keys.events,
            keys.lease,
            keys.gone,
            self.keys.leases,
            keys.pending,
            self.keys.queue,
        ], [
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
        ttl = self.settings.session_ttl_seconds
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.meta, mapping=dict(self._session_fields(session)))
            pipe.expire(keys.meta, ttl)
            pipe.set(keys.gone, session.tenant, ex=ttl + self.settings.tombstone_ttl_seconds)
            await pipe.execute()

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
        # The command name as bytes: redis-py looks its reply parsers up by name as a string, so it
        # hands over hiredis's lists as they are, instead of a dict per entry (catch-up reads cost
        # about half as much: 10,000 events in 8 ms instead of 14).
        key = self.keys.session(session_id).events
        entries = await self.redis.execute_command(b"XRANGE", key, f"({after}-0", "+", b"COUNT", count)  # type: ignore[no-untyped-call]
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
        result = await self._cancel_run(keys=keys, args=[*args, self.keys.cancel_channel, CANCELLED_BY_REQUEST])
        outcome = result[0].decode()
        if outcome == "gone":
            raise SessionExpired(session_id)
        if outcome == "missing":
            raise SessionNotFound(session_id)
        return Cancel(outcome), result[1].decode() if len(result) > 1 else None

    async def delete_session(self, session: SessionRecord) -> None:
        """Delete the session, and take away its run's lease: a worker still running it is fenced
        at its next append, and no reaper looks for the run again. The tombstone names its tenant."""
        keys, tenant = self.keys.session(session.session_id), session.tenant
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.meta, keys.runs, keys.events, keys.lease, keys.pending)
            pipe.zrem(self.keys.leases, session.session_id)
            pipe.set(keys.gone, tenant, ex=max(1, self.settings.tombstone_ttl_seconds))
            pipe.publish(keys.events, SESSION_GONE)  # gateways following it end their streams now
            await pipe.execute()

    async def writable(self) -> None:
        """Raise as Redis would if it refuses writes now (out of memory, a read-only replica)."""
        await self.redis.set(self.keys.probe, 1, px=10_000)

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
        result = await self._start_run(keys=keys, args=args)
        if result[0] != b"ok":
            return None
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
        return int(seq)

    async def renew_lease(self, session_id: str, run_id: str, lease_token: str) -> Renewal:
        keys = self.keys.session(session_id)
        return Renewal(
            await self._renew_lease(
                keys=[keys.lease, self.keys.leases, keys.meta],
                args=[lease_token, self.settings.lease_ms, session_id, run_id],
            )
        )

    async def requeue_run(self, session_id: str, lease_token: str = "") -> Requeue:
        """Queue the session's running run again for another worker: on hand-over (with our lease
        token) or when its lease deadline passed (without; a reaper's call)."""
        keys, args = self._run_script_args(session_id)
        args += [lease_token, secrets.token_hex(4)]
        return Requeue((await self._requeue_run(keys=keys, args=args)).decode())

    async def expired_leases(self, offset: int = 0, count: int = 100) -> list[str]:
        """Sessions whose run's lease deadline passed (their worker died, stalled or lost Redis),
        oldest first: one page of the leases index."""
        members = await self._expired_leases(keys=[self.keys.leases], args=[offset, count])
        return [member.decode() for member in members]


_RUN_COMPLETED = EventType.RUN_COMPLETED.encode()
