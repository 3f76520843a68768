"""What one tenant's MCP calls may hold, and what a call closed at the worst instant leaves: a call
that waits for its run holds one of the tenant's stream slots, as a stream does, taken before its
run is queued; refused for want of one, or of runs per minute, a call says so (-32029, with the kind
and when to retry) and started nothing; a call closed while its run is queued leaves no run going."""

import asyncio
import contextlib
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.fixtures.stack import Gateway
from tests.mcp_client import connect
from tests.waiting import eventually
from tokentail.gateway.commands.tasks import RunTasks, Task

AGENTS = {"slow_compute": "tests.mcp_agents:slow_compute", "greet": "tests.mcp_agents:greet"}


@pytest.fixture
async def gateway(start_gateway: Any, start_worker: Any) -> Gateway:
    started: Gateway = await start_gateway(agents=AGENTS, max_streams_per_tenant=1, runs_per_minute=3)
    await start_worker(agents=AGENTS)
    return started


async def sessions_made(gateway: Gateway) -> int:
    prefix = gateway.settings.key_prefix
    return len(await gateway.app.state.store.redis.keys(f"{prefix}:{{s_*}}:meta"))


async def test_a_waiting_call_holds_a_stream_slot_and_a_refused_one_starts_nothing(gateway: Gateway) -> None:
    async with connect(gateway.url, tasks=False) as holder, connect(gateway.url, tasks=False) as refused:
        waiting = asyncio.create_task(holder.call_tool("slow_compute", {"seconds": 60}))
        slots = gateway.app.state.stream_slots
        await eventually(lambda: slots._held, what="the waiting call's slot")

        async def its_session_made() -> int:
            # its slot is taken before its run is queued: count once its session exists
            assert (made := await sessions_made(gateway)) == 1
            return made

        made = await eventually(its_session_made, what="the waiting call's session")
        with pytest.raises(MCPError) as over:
            await refused.call_tool("greet", {"name": "World"})
        assert await sessions_made(gateway) == made  # the refused call started nothing
        assert over.value.error.code == -32029
        assert over.value.error.data["type"] == "too_many_streams" and over.value.error.data["retryAfter"] >= 1
        waiting.cancel()  # the caller closes its call: its run is cancelled, its slot given back
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        result = await eventually(lambda: refused.call_tool("greet", {"name": "again"}), ignoring=(MCPError,))
        assert "again" in str(result.content)


async def test_past_its_runs_per_minute_a_call_is_refused(gateway: Gateway) -> None:
    async with connect(gateway.url, tasks=False) as client:
        for name in ("a", "b", "c"):
            await client.call_tool("greet", {"name": name})
        with pytest.raises(MCPError) as over:
            await client.call_tool("greet", {"name": "d"})
    assert over.value.error.code == -32029 and over.value.error.data["type"] == "rate_limited"


async def test_a_call_closed_while_its_run_is_queued_leaves_no_run_going(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued, go_on = asyncio.Event(), asyncio.Event()
    started: list[Task] = []
    start = RunTasks.start

    async def start_slowly(self: RunTasks, *args: Any, **kwargs: Any) -> Task:
        task = await start(self, *args, **kwargs)
        started.append(task)
        queued.set()
        await go_on.wait()  # the worst instant: queued, and the call not told yet
        return task

    monkeypatch.setattr(RunTasks, "start", start_slowly)
    async with connect(gateway.url, tasks=False) as client:
        call = asyncio.create_task(client.call_tool("slow_compute", {"seconds": 60}))
        await queued.wait()
        call.cancel()  # the client closes its call
        with contextlib.suppress(asyncio.CancelledError):
            await call
    slots = gateway.app.state.stream_slots
    await eventually(lambda: not slots._held, what="the gateway done with the closed call, its slot given back")
    go_on.set()  # only now is the run's queueing over
    store = gateway.app.state.store

    async def cancelled() -> bool:
        session = await store.get_session(started[0].session.session_id)
        return bool(session.runs[0].status == "cancelled")

    await eventually(cancelled, what="the run of the closed call cancelled")
