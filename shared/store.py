"""The session store: every read and write of session streams and records in Redis.

Writes that must be atomic (queue a run, start it, append to it) are Lua scripts in `lua/`.
"""

import json
import secrets
import time
from collections.abc import Awaitable, Sequence
from importlib import resources
from typing import NamedTuple, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.errors import LeaseLost, RunConflict, SessionExpired, SessionNotFound
from shared.events import EventType
from shared.jobs import JOB_TTL_MS, RUN_JOB, run_job_payload
from shared.keys import Keys
from shared.records import PUBLIC_TENANT, Multitask, RunRecord, SessionRecord
from shared.settings import Settings


class StoredEvent(NamedTuple):
    seq: int
    type: bytes
    data: bytes  # compact JSON, forwarded to clients as it is
    ts_us: int  # Redis time of the append, in microseconds


def load_script(name: str) -> str:
    return resources.files("shared").joinpath("lua", f"{name}.lua").read_text()


def parse_entries(entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> list[StoredEvent]:
    return [
        StoredEvent(int(entry_id.partition(b"-")[0]), fields[b"type"], fields[b"data"], int(fields[b"ts"]))
        for entry_id, fields in entries
    ]


def encode_run(run: RunRecord) -> str:
    # The Lua scripts decode and re-encode run records with cjson, which turns [] into {} and large
    # integers into floats: params travel through them as an opaque string.
    record = run.model_dump(mode="json")
    record["params"] = _compact(record["params"])
    return _compact(record)


def decode_run(raw: bytes | str) -> RunRecord:
    record = json.loads(raw)
    if isinstance(record.get("params"), str):
        record["params"] = json.loads(record["params"])
    return RunRecord.model_validate(record)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SessionStore:
    def __init__(self, redis: "Redis", settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._queue_run = redis.register_script(load_script("queue_run"))
        self._start_run = redis.register_script(load_script("start_run"))
        self._append = redis.register_script(load_script("append"))
        self._renew_lease = redis.register_script(load_script("renew_lease"))
        self._requeue_run = redis.register_script(load_script("requeue_run"))
        self._cancel_run = redis.register_script(load_script("cancel_run"))

    # -- gateway side ---------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord) -> None:
        """Create a session with no run yet; like a finished one, it expires if left unused."""
        keys = self.keys.session(session.session_id)
        ttl = self.settings.session_ttl_seconds
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.meta, mapping=dict(self._session_fields(session)))
            pipe.expire(keys.meta, ttl)
            pipe.set(keys.gone, 1, ex=ttl + self.settings.tombstone_ttl_seconds)
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
        keys = self.keys.session(session_id)
        fields = [item for pair in self._session_fields(create) for item in pair] if create else []
        queued = _compact({"run_id": run.run_id, "input": run.input})
        result = await self._queue_run(
            keys=[
                keys.meta,
                keys.runs,
                keys.events,
                keys.gone,
                self.keys.arq_job(run.run_id),
                self.keys.queue,
                keys.pending,
            ],
            args=[
                run.run_id,
                encode_run(run),
                multitask,
                self.settings.stream_maxlen,
                queued,
                run_job_payload(session_id, run.run_id),
                JOB_TTL_MS,
                self.keys.wake_channel,
                "1" if create else "0",
                self.keys.cancel_channel,
                *fields,
            ],
        )
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

    async def session_tenant(self, session_id: str) -> str | None:
        """The tenant owning the session; None if there is no such session (any more)."""
        meta = self.keys.session(session_id).meta
        tenant, created = await cast(Awaitable[list[bytes | None]], self.redis.hmget(meta, ["tenant", "created_at"]))
        if created is None:
            return None
        return tenant.decode() if tenant else PUBLIC_TENANT  # sessions from before tenants existed

    async def stream_position(self, session_id: str) -> tuple[int, bool]:
        """The last event id given out, and whether a run is queued or running."""
        keys = self.keys.session(session_id)
        seq, active = await cast(Awaitable[list[bytes | None]], self.redis.hmget(keys.meta, ["seq", "active_run"]))
        if seq is None and active is None and not await self.redis.exists(keys.meta):
            if await self.redis.exists(keys.gone):
                raise SessionExpired(session_id)
            raise SessionNotFound(session_id)
        return int(seq or 0), bool(active)

    async def active_run_id(self, session_id: str) -> str | None:
        value = await cast(Awaitable[bytes | None], self.redis.hget(self.keys.session(session_id).meta, "active_run"))
        return value.decode() if value else None

    async def first_available(self, session_id: str) -> int | None:
        """The oldest id still in the stream (older ones were trimmed), or None if it is empty."""
        entries = await self.redis.xrange(self.keys.session(session_id).events, count=1)
        return parse_entries(entries)[0].seq if entries else None

    async def read(self, session_id: str, after: int, count: int) -> list[StoredEvent]:
        """Stored events with ids after `after`, oldest first, at most `count`."""
        entries = await self.redis.xrange(self.keys.session(session_id).events, min=f"({after}-0", count=count)
        return parse_entries(entries)

    async def partial_text(self, session_id: str, run: RunRecord) -> str:
        """The text the active attempt of `run` has streamed so far."""
        if run.started_seq is None:
            return ""
        parts: list[str] = []
        after = run.started_seq
        while batch := await self.read(session_id, after, 1000):
            parts.extend(
                json.loads(event.data)["text"] for event in batch if event.type == EventType.MESSAGE_DELTA.encode()
            )
            after = batch[-1].seq
        return "".join(parts)

    async def cancel_run(self, session_id: str) -> str | None:
        """Ask for the active run to be cancelled; its id, or None if no run is active."""
        keys = self.keys.session(session_id)
        result = await self._cancel_run(keys=[keys.meta, keys.gone], args=[self.keys.cancel_channel])
        outcome = result[0].decode()
        if outcome == "signalled":
            return str(result[1].decode())
        if outcome == "idle":
            return None
        raise SessionExpired(session_id) if outcome == "gone" else SessionNotFound(session_id)

    async def delete_session(self, session_id: str) -> None:
        keys = self.keys.session(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.meta, keys.runs, keys.events, keys.lease, keys.pending)
            pipe.set(keys.gone, 1, ex=max(1, self.settings.tombstone_ttl_seconds))
            await pipe.execute()

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

    async def start_run(self, session_id: str, run_id: str, lease_token: str) -> tuple[RunRecord, str] | None:
        """Claim the run under `lease_token` (appending `run.retrying` if it is a takeover, then
        `run.started`); None if it is not ours to run. The verdict is '' (run it), 'cancel' or
        'exhausted' (end it at once, holding the lease)."""
        keys = self.keys.session(session_id)
        result = await self._start_run(
            keys=[keys.meta, keys.runs, keys.events, keys.lease, self.keys.leases],
            args=[
                session_id,
                run_id,
                lease_token,
                self.settings.lease_ms,
                self.settings.stream_maxlen,
                self.settings.max_attempts,
            ],
        )
        if result[0] != b"ok":
            return None
        return decode_run(result[2]), result[3].decode()

    async def append(
        self,
        session_id: str,
        run_id: str,
        lease_token: str,
        events: Sequence[tuple[str, str]],
        append_id: str | None = None,
    ) -> int:
        """Append `(type, data_json)` events under the run's lease; returns the last seq. Sending the
        same `append_id` again (after a lost reply) appends nothing twice."""
        keys = self.keys.session(session_id)
        args: list[str | int] = [
            run_id,
            lease_token,
            self.settings.stream_maxlen,
            self.settings.session_ttl_seconds,
            self.settings.tombstone_ttl_seconds,
            session_id,
            JOB_TTL_MS,
            self.keys.wake_channel,
            self.keys.arq_job(""),
            RUN_JOB,
            append_id or secrets.token_hex(8),
        ]
        for event_type, data in events:
            args += [event_type, data]
        keys_ = [
            keys.meta,
            keys.runs,
            keys.events,
            keys.lease,
            keys.gone,
            self.keys.leases,
            keys.pending,
            self.keys.queue,
        ]
        try:
            seq = await self._append(keys=keys_, args=args)
        except ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise LeaseLost(str(exc)) from None
            raise
        return int(seq)

    async def renew_lease(self, session_id: str, run_id: str, lease_token: str) -> int:
        """0 if the lease is lost, 1 if renewed, 2 if renewed and a cancel of the run is pending."""
        keys = self.keys.session(session_id)
        return int(
            await self._renew_lease(
                keys=[keys.lease, self.keys.leases, keys.meta],
                args=[lease_token, self.settings.lease_ms, session_id, run_id],
            )
        )

    async def requeue_run(self, session_id: str, run_id: str, lease_token: str = "") -> bool:
        """Queue the running run again for another worker: on hand-over (with our lease token) or
        when its lease expired (without). True if this call requeued it."""
        keys = self.keys.session(session_id)
        job_id = f"{run_id}.{secrets.token_hex(4)}"  # arq refuses a job id it still remembers
        return bool(
            await self._requeue_run(
                keys=[keys.meta, keys.lease, self.keys.leases, self.keys.arq_job(job_id), self.keys.queue, keys.runs],
                args=[
                    session_id,
                    lease_token,
                    run_job_payload(session_id, run_id),
                    JOB_TTL_MS,
                    job_id,
                    self.keys.wake_channel,
                ],
            )
        )

    async def expired_leases(self, limit: int = 100) -> list[str]:
        """Sessions whose running run's lease expired: their worker died or stalled."""
        now_ms = int(time.time() * 1000)
        members = await self.redis.zrangebyscore(self.keys.leases, "-inf", now_ms, start=0, num=limit)
        return [member.decode() for member in members]
