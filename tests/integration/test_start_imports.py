"""What a gateway leaves to its first request that needs it (a gateway's start is most of what the
test suite's processes cost, and a deployment's cold start): a gateway started as `tokentail gateway`
starts it, until its /readyz answers, has imported neither a2a-sdk (gateway/protocols/a2a/routes.py)
nor jsonschema (the first schema checked imports it: shared/features/agent_catalog.py,
gateway/commands/questions.py)."""

import asyncio
import json
import os
import sys
from pathlib import Path

from tokentail.shared.plumbing.settings import Settings

ROOT = Path(__file__).parents[2]
ON_DEMAND = ("a2a", "jsonschema")

# A gateway in a process of its own, started as the CLI starts it (not tests/fixtures/stack.py's Gateway,
# which imports the worker): what it has imported once /readyz answers.
STARTED = """
import asyncio, json, socket, sys
import httpx2
from tests.support.waiting import eventually
from tokentail.gateway.app import create_app
from tokentail.gateway.server import GatewayServer, server_config
from tokentail.shared.plumbing.settings import Settings

async def main():
    settings = Settings()
    app = create_app(settings)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = GatewayServer(server_config(app, settings, "127.0.0.1", port, log_level="warning"), app)
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        await eventually(lambda: bool(server.started), what="the gateway started")
        async with httpx2.AsyncClient(timeout=60) as client:
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
        imported = sorted({name.partition(".")[0] for name in sys.modules} & set(sys.argv[1:]))
        print(json.dumps({"ready": ready.status_code, "imported": imported}))
    finally:
        app.state.shutdown.begin()
        server.should_exit = True
        await serving

asyncio.run(main())
"""


async def test_a_started_gateway_has_imported_neither_a2a_sdk_nor_jsonschema(settings: Settings) -> None:
    env = {**os.environ, "TOKENTAIL_REDIS_URL": str(settings.redis_url), "TOKENTAIL_KEY_PREFIX": settings.key_prefix}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STARTED, *ON_DEMAND, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    told = json.loads(out.decode().strip().splitlines()[-1])
    assert told == {"ready": 200, "imported": []}
