"""Sessions, runs and events as the tests make them, whichever Redis (fake or real) they run on."""

import json
import time
from typing import Any

import httpx2

from tests.support.waiting import TIMEOUT, eventually
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.shared.store.reads import last_seq
from tokentail.shared.store.scripts.runs import StartVerdict
from tokentail.shared.vocabulary.events import RunCompleted
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord
from tokentail.worker.writes.run_writes import RunLease


def make_session(tenant: str = "public") -> SessionRecord:
    return SessionRecord(session_id=new_session_id(), created_at=time.time(), model="scripted", tenant=tenant)


def make_run(text: str = "hello") -> RunRecord:
    return RunRecord(run_id=new_run_id(), input=text, model="scripted")


def delta_of(run_id: str, text: str = "x") -> tuple[str, str]:
    """A `message.delta` as a worker appends it: (type, data)."""
    return "message.delta", json.dumps({"run_id": run_id, "text": text})


def completion(run_id: str, output: str = "") -> RunCompleted:
    return RunCompleted(run_id=run_id, output=output, usage={"output_tokens": 1})


async def start_a_run(runs: AllWrites, tenant: str = "public") -> tuple[str, RunRecord]:
    """A new session whose run a worker started under the lease token "lease-1"; its id and the run."""
    session = make_session(tenant)
    run = make_run()
    await runs.queue_run(session.session_id, run, create=session)
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease-1")
    assert started is not None and started.verdict is StartVerdict.RUN
    return session.session_id, started.run


async def waiting_for_input(
    client: httpx2.AsyncClient, session_url: str, credential: str | None = None, within: float = TIMEOUT
) -> dict[str, Any]:
    """The session's state (`GET session_url`) once its run waits for an answer: the question is
    its `pending_input`."""
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}

    async def asked() -> dict[str, Any]:
        state: dict[str, Any] = (await client.get(session_url, headers=headers)).json()
        assert state["status"] == "waiting_for_input"
        return state

    return await eventually(asked, within=within, what="the run waiting for input")


async def held(runs: AllWrites, session_id: str, run_id: str, token: str = "lease-1") -> RunLease:
    """The run's lease as its worker holds it now, the session's last event its own last write: a worker
    names the ids of its appends after the last it wrote (append_events.lua), which `start_run` tells it
    first; a lease made anew for each append must be told where it stands."""
    lease = RunLease(runs, session_id, run_id, token)
    top = await runs.redis.xrevrange(runs.keys.session(session_id).events, count=1)
    lease.journal.written = last_seq(None, top)
    return lease


async def write_turns(runs: AllWrites, turns: int, deltas: int, *, last_ends: bool = True) -> tuple[str, RunLease]:
    """A session of `turns` runs of `deltas` one-word deltas each, written as a worker would."""
    session = make_session()
    lease = None
    for number in range(turns):
        run = make_run(f"question {number}")
        await runs.queue_run(session.session_id, run, create=session if number == 0 else None)
        started = await runs.start_run(session.session_id, run.run_id, run.run_id, token=f"lease-{number}")
        assert started is not None
        lease = RunLease(runs, session.session_id, run.run_id, f"lease-{number}")
        await lease.append([delta_of(run.run_id, f"w{i} ") for i in range(deltas)])
        if number < turns - 1 or last_ends:
            output = "".join(f"w{i} " for i in range(deltas))
            await lease.append([], ending=completion(run.run_id, output))
    assert lease is not None
    return session.session_id, lease
