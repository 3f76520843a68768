"""What one tenant's MCP calls may hold: a call that waits for its run holds one of the tenant's
stream slots, as a stream does, taken before its run is queued; refused for want of one, or of
runs per minute, a call says so (-32029, with the kind and when to retry) and started nothing."""

import asyncio
import contextlib
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.fixtures.stack import Gateway
from tests.mcp_client import connect
from tests.waiting import eventually

AGENTS = {"slow_compute": "tests.mcp_agents:slow_compute", "greet": "tests.mcp_agents:greet"}


@pytest.fixture
async def gateway(start_gateway: Any, start_worker: Any) -> Gateway:
    started: Gateway = await start_gateway(agents=AGENTS, max_streams_per_tenant=1, runs_per_minute=3)
    await start_worker(agents=AGENTS)
    return started


async def test_a_waiting_call_holds_a_stream_slot_and_a_refused_one_starts_nothing(gateway: Gateway) -> None:
    async with connect(gateway.url, tasks=False) as holder, connect(gateway.url, tasks=False) as refused:
        waiting = asyncio.create_task(holder.call_tool("slow_compute", {"seconds": 60}))
        slots = gateway.app.state.stream_slots
        await eventually(lambda: slots._held, what="the waiting call's slot")
        with pytest.raises(MCPError) as over:
            await refused.call_tool("greet", {"name": "World"})
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
