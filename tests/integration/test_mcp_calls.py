"""What one tenant's MCP calls may hold, and what a call closed at the worst instant leaves: a call
that waits for its run holds one of the tenant's stream slots, as a stream does, taken before its
run is queued; refused for want of one, or of runs per minute, a call says so (-32029, with the kind
and when to retry) and started nothing; a call closed while its run is queued leaves no run going.
And a call's routing headers are read without the whitespace around their values, as HTTP says;
the server says what it is, to either revision's client; and a fresh gateway judges a call by what
its worker published, though it read the agents before the worker had."""

import asyncio
import contextlib
import json
import types
from importlib.metadata import version
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

from tests.clients.mcp_client import connect
from tests.fixtures.stack import Gateway
from tests.support.waiting import eventually
from tokentail.gateway.commands.tasks import RunTasks, Task
from tokentail.shared.features import agent_catalog
from tokentail.shared.features.agent_catalog import INPUT_SCHEMA, AgentInfo

pytestmark = pytest.mark.mcp


AGENTS = {"slow_compute": "tests.agents.mcp_agents:slow_compute", "greet": "tests.agents.mcp_agents:greet"}


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


async def test_past_its_runs_per_minute_a_call_is_refused(
    gateway: Gateway, limits_clock: types.SimpleNamespace
) -> None:
    # (The limits' clock held still: four calls that straddled a minute's end found the fourth's budget fresh.)
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
        await eventually(lambda: queued.is_set() or call.done(), what="the call's run queued")
        assert queued.is_set(), f"the call ended before its run was queued: {call.result()!r}"
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


async def test_a_fresh_gateway_judges_a_call_by_what_its_worker_published_after_it_read_the_agents(
    start_gateway: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 70, item 13: the conformance suite's first call of `slow_compute` on a fresh stack was
    answered `resultType: "complete"` at once, with no run: the gateway had read the agents before
    its worker published them (a `tools/list`), and kept the defaults (one string, `input`) after."""
    go, published = asyncio.Event(), asyncio.Event()
    publish = agent_catalog.publish

    async def publish_when_told(redis: Any, keys: Any, infos: list[AgentInfo]) -> None:
        await go.wait()  # the worker started, its agents not published yet: the worst instant
        await publish(redis, keys, infos)
        published.set()

    monkeypatch.setattr(agent_catalog, "publish", publish_when_told)
    # A task-supporting call answers with its task at once (not with its result, had it come first).
    gateway: Gateway = await start_gateway(agents=AGENTS, mcp_task_after_seconds=0)
    gateway.app.state.agents.REFRESH_SECONDS = 3600.0  # its refresh of what it read is not what the call waits for
    await start_worker(agents=AGENTS)
    async with connect(gateway.url) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert listed["slow_compute"].input_schema == INPUT_SCHEMA  # nothing published: the defaults
        go.set()
        await eventually(published.is_set, what="the worker's agents published")
        created = await client.session.call_tool("slow_compute", {"seconds": 0.5}, allow_claimed=True)
        assert getattr(created, "task_id", None), f"a task of the run, not {created!r}"
        result = await client.call_tool("slow_compute", {"seconds": 0, "label": "it"})
    assert not result.is_error and result.content[0].text == "computed it in 0 s"  # type: ignore[union-attr]


def tool_call(port: int, name: str, method: str = "tools/call") -> bytes:
    """`tools/call greet` as written on the wire, its `Mcp-Method` and `Mcp-Name` header values exactly as
    given: an HTTP client would refuse their whitespace, or trim it."""
    meta = {PROTOCOL_VERSION_META_KEY: "2026-07-28", CLIENT_CAPABILITIES_META_KEY: {}}
    params = {"name": "greet", "arguments": {"name": "Ada"}, "_meta": meta}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n"
        f"Mcp-Method: {method}\r\nMcp-Name: {name}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.parametrize(
    ("method", "name", "answered"),
    [
        ("tools/call", "  greet  ", True),
        (" tools/call\t", "\tgreet ", True),
        ("tools/call", "  wrong  ", False),  # trimmed, still another tool's name
    ],
    ids=["spaces", "tabs", "mismatch"],
)
async def test_routing_header_values_are_read_without_the_whitespace_around_them(
    start_gateway: Any, start_worker: Any, method: str, name: str, answered: bool
) -> None:
    """RFC 9110 §5.5: a field value is read without its leading and trailing whitespace. The `mcp` SDK
    compared `Mcp-Name` with it (the conformance suite's `sep-2243-server-accepts-whitespace-header-value`),
    and uvicorn's httptools keeps the trailing part: a call with `Mcp-Name:  greet  ` was refused -32020."""
    gateway: Gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    await gateway.sees_published("greet")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(tool_call(gateway.port, name, method))
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    if answered:
        assert head.startswith(b"HTTP/1.1 200 ") and b"Hello, Ada!" in body, answer
    else:
        assert head.startswith(b"HTTP/1.1 400 ") and b"-32020" in body, answer


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_server_names_itself_with_tokentail_s_version(gateway: Gateway, mode: str) -> None:
    # `serverInfo` of the initialize reply (legacy), or the `_meta` stamp of discover: the version was "".
    async with connect(gateway.url, tasks=False, mode=mode) as client:
        assert client.server_info is not None
        assert (client.server_info.name, client.server_info.version) == ("tokentail", version("tokentail"))


async def test_a_call_s_meta_user_is_the_end_user_its_run_counts_against(gateway: Gateway) -> None:
    # docs/api.md, Fair admission: the per-user cap counts the runs of the user `_meta` names.
    async with connect(gateway.url, tasks=False) as client:
        ann: Any = {"user": "ann@example.com"}
        too_long: Any = {"user": "x" * 257}
        await client.call_tool("greet", {"name": "Ada"}, meta=ann)
        with pytest.raises(MCPError) as refused:
            await client.call_tool("greet", {"name": "Bo"}, meta=too_long)
    assert "user" in refused.value.error.message
    redis = gateway.app.state.store.redis
    [meta_key] = await redis.keys(f"{gateway.settings.key_prefix}:{{s_*}}:meta")  # the refused call made none
    assert await redis.hget(meta_key, "user") == b"ann@example.com"
