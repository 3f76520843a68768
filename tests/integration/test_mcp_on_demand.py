"""`/mcp`'s server is built on the first call (gateway/protocols/mcp/routes.py): a gateway starts
without importing the `mcp` SDK, its first call builds the server and is answered, calls that come
together while it builds wait for the one build, a build that failed answers 503 and the next call
builds again, and a gateway named a module for its server that does not exist fails to start."""

import asyncio
import json
import threading
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from tests.clients.mcp_client import connect
from tests.fixtures.stack import Gateway
from tests.support.fresh_process import told_by
from tests.support.waiting import eventually
from tokentail.gateway.protocols.mcp import routes, server
from tokentail.shared.plumbing.settings import Settings

pytestmark = pytest.mark.mcp


# A gateway in a process of its own (this one imported the SDK long ago): started, what it has imported
# of the SDK; then its first call, sent as the wire has it (the SDK's client would import the SDK).
FIRST_CALL = """
import asyncio, json, sys
import httpx2
from tests.fixtures.stack import Gateway
from tokentail.shared.plumbing.settings import Settings

LIST_TOOLS = {
    "jsonrpc": "2.0", "id": 1, "method": "tools/list",
    "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                         "io.modelcontextprotocol/clientCapabilities": {}}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
           "Mcp-Method": "tools/list"}

async def main():
    gateway = await Gateway(Settings()).start()
    try:
        imported = sorted(name for name in sys.modules if name.partition(".")[0] == "mcp")
        async with httpx2.AsyncClient(timeout=60) as client:
            answer = await client.post(f"{gateway.url}/mcp", json=LIST_TOOLS, headers=HEADERS)
        print(json.dumps({"imported": imported, "status": answer.status_code, "body": answer.text}))
    finally:
        await gateway.stop()

asyncio.run(main())
"""


async def test_a_gateway_starts_without_the_sdk_and_its_first_call_builds_the_server(settings: Settings) -> None:
    told = await told_by(FIRST_CALL, settings)
    assert told["imported"] == []  # started, and not a module of the SDK imported
    assert told["status"] == 200, told["body"]
    body = told["body"]  # JSON, or an event stream of one message
    message = json.loads(body[body.index("{") :].split("\n")[0])
    assert "assistant" in {tool["name"] for tool in message["result"]["tools"]}


async def test_calls_that_come_together_first_build_the_server_once(
    start_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built, go_on = [], threading.Event()  # the build is held (in its thread) until all the calls came
    build_server = server.build_server

    def held_build(settings: Settings) -> Any:
        built.append(settings)
        assert go_on.wait(60), "the test never let the build go on"
        return build_server(settings)

    arrived = 0
    endpoint = routes.Endpoint.__call__

    async def counted(self: routes.Endpoint, *args: Any) -> None:
        nonlocal arrived
        arrived += 1
        await endpoint(self, *args)

    monkeypatch.setattr(server, "build_server", held_build)
    monkeypatch.setattr(routes.Endpoint, "__call__", counted)
    gateway: Gateway = await start_gateway()
    calls = 4

    async def list_tools() -> set[str]:
        async with connect(gateway.url, tasks=False) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    try:
        listing = [asyncio.create_task(list_tools()) for _ in range(calls)]
        await eventually(lambda: arrived >= calls and built, what="every call at /mcp, and the build begun")
    finally:
        go_on.set()
    for tools in await asyncio.gather(*listing):
        assert "assistant" in tools
    assert len(built) == 1


async def test_a_build_that_failed_answers_503_and_the_next_call_builds_again(
    start_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [RuntimeError("the first build fails")]
    build_server = server.build_server

    def failing_once(settings: Settings) -> Any:
        if failures:
            raise failures.pop()
        return build_server(settings)

    monkeypatch.setattr(server, "build_server", failing_once)
    gateway: Gateway = await start_gateway()
    async with httpx2.AsyncClient() as http:
        refused = await http.post(f"{gateway.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "mcp_unavailable"
    async with connect(gateway.url, tasks=False) as client:
        assert "assistant" in {tool.name for tool in (await client.list_tools()).tools}


async def test_a_server_module_that_does_not_exist_fails_the_start(settings: Settings) -> None:
    app = FastAPI()
    app.state.settings = settings.model_copy(update={"mcp_server": "tests.servers.no_such_server:server"})
    with pytest.raises(ValueError, match="TOKENTAIL_MCP_SERVER: there is no module 'tests.servers.no_such_server'"):
        async with routes.serving(app):
            pass
