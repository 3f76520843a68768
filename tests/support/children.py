"""Sub-agent runs written straight into Redis, as the contract of issue 72 says a parent's spawn writes
them (docs/api.md, `run.spawned`): for the readers' tests (the filtered stream, the session's state,
the CLI, the demo page) without the worker's `ctx.spawn`.

A `Tree` plays a worker running a session's own run (under its lease, as `start_a_run` gives it) and
every child of it: the parent's `tool.started`, the child's `run.spawned` and `run.started`, its
deltas, its end (the stream entry and its record), the parent's `tool.completed`."""

import json
import time
from typing import Any

from pydantic import BaseModel

from tests.support.sessions import completion, held
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_run_id
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.events import (
    MessageDelta,
    RunCancelled,
    RunCompleted,
    RunSpawned,
    RunStarted,
    SpawnCause,
    ToolCompleted,
    ToolFailed,
    ToolStarted,
)
from tokentail.worker.writes.run_writes import stored_ending

# One event appended at the session's next id, published as lib/events.lua's put_event does (a child's
# end, which the parent's lease cannot append: append.lua would end the parent).
_PUT = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq = math.max(top[1] and tonumber(string.match(top[1][1], '^%d+')) or 0,
                     tonumber(redis.call('HGET', KEYS[2], 'seq') or 0)) + 1
local now = redis.call('TIME')
local ts = now[1] .. string.format('%06d', tonumber(now[2]))
redis.call('XADD', KEYS[1], seq .. '-0', 'type', ARGV[1], 'data', ARGV[2], 'ts', ts)
redis.call('PUBLISH', KEYS[1], seq .. ' ' .. ts .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
return seq
"""


class Tree:
    def __init__(self, runs: AllWrites, session_id: str, root: str, token: str = "lease-1") -> None:
        self.runs = runs
        self.redis = runs.redis
        self.session_id = session_id
        self.root = root
        self.token = token
        self.keys = runs.keys.session(session_id)
        self.depth = {root: 0}

    async def append(self, *events: tuple[str, BaseModel]) -> int:
        """Events of any run of the tree, as the session's worker appends them; the last id."""
        lease = await held(self.runs, self.session_id, self.root, self.token)
        return await lease.append([(event_type, data.model_dump_json()) for event_type, data in events])

    async def spawn(self, parent: str, name: str = "helper", input: str = "look it up", call_id: str = "") -> str:
        """A child of `parent`, started: its id."""
        child, call_id = new_run_id(), call_id or f"call_{new_run_id()}"
        depth = self.depth[child] = self.depth[parent] + 1
        await self._record(
            child,
            input=input,
            agent=name,
            status="running",
            attempt=1,
            parent_run_id=parent,
            depth=depth,
            call_id=call_id,
            name=name,
            started_at=time.time(),
        )
        cause = SpawnCause(type="tool_call", call_id=call_id)
        spawned = RunSpawned(run_id=child, parent_run_id=parent, agent=name, name=name, input=input, cause=cause)
        seq = await self.append(
            ("tool.started", ToolStarted(run_id=parent, call_id=call_id, name=name, arguments={"input": input})),
            ("run.spawned", spawned),
            ("run.started", RunStarted(run_id=child, attempt=1, parent_run_id=parent)),
        )
        await self._update(child, queued_seq=seq - 1, started_seq=seq)
        parent_record = await self._read(parent)
        await self._update(parent, children=[*parent_record.get("children", []), child])
        return child

    async def say(self, run_id: str, *texts: str) -> int:
        return await self.append(*(("message.delta", MessageDelta(run_id=run_id, text=text)) for text in texts))

    async def end(self, child: str, output: str = "", status: str = "completed", to_parent: bool = True) -> int:
        """The child's end (`completed` with `output`, or `cancelled`), then (`to_parent`: the parent
        still running) its parent's tool result."""
        record = await self._read(child)
        parent = record["parent_run_id"]
        ending = (
            RunCompleted(run_id=child, parent_run_id=parent, output=output, usage={})
            if status == "completed"
            else RunCancelled(run_id=child, parent_run_id=parent, reason="cancelled by request")
        )
        stored, _ = stored_ending(ending)
        event = "run.completed" if status == "completed" else "run.cancelled"
        # Its record first, as end_run writes it with the event: a gateway reads the output there.
        seq = (await SessionStore(self.redis, self.runs.settings).stream_position(self.session_id))[0] + 1
        await self._update(child, status=status, finished_seq=seq, finished_at=time.time(), output=output or None)
        put = await self.redis.eval(_PUT, 2, self.keys.events, self.keys.meta, event, stored)  # type: ignore[misc]
        assert int(put) == seq
        if not to_parent:
            return seq
        call_id = record["call_id"]
        result: tuple[str, BaseModel] = (
            ("tool.completed", ToolCompleted(run_id=parent, call_id=call_id, result=output, duration_ms=1))
            if status == "completed"
            else ("tool.failed", ToolFailed(run_id=parent, call_id=call_id, error="cancelled", duration_ms=1))
        )
        return await self.append(result)

    async def end_root(self, output: str = "done") -> int:
        lease = await held(self.runs, self.session_id, self.root, self.token)
        return await lease.append([], ending=completion(self.root, output))

    async def _read(self, run_id: str) -> dict[str, Any]:
        raw = await self.redis.hget(self.keys.runs, run_id)  # type: ignore[misc]
        assert raw is not None, run_id
        record: dict[str, Any] = json.loads(raw)
        return record

    async def _record(self, run_id: str, **fields: Any) -> None:
        await self.redis.hset(self.keys.runs, run_id, json.dumps({"run_id": run_id, **fields}))  # type: ignore[misc]

    async def _update(self, run_id: str, **fields: Any) -> None:
        await self.redis.hset(self.keys.runs, run_id, json.dumps({**await self._read(run_id), **fields}))  # type: ignore[misc]
