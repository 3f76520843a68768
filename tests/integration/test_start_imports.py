"""What a gateway leaves to its first request that needs it (a gateway's start is most of what the
test suite's processes cost, and a deployment's cold start): a gateway started as `tokentail gateway`
starts it, until its /readyz answers, has imported neither a2a-sdk (gateway/protocols/a2a/routes.py)
nor jsonschema (the first schema checked imports it: shared/features/agent_catalog.py,
gateway/commands/questions.py)."""

from tests.support.fresh_process import told_by
from tokentail.shared.plumbing.settings import Settings

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
    told = await told_by(STARTED, settings, *ON_DEMAND)
    assert told == {"ready": 200, "imported": []}
