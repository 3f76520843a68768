"""A2A's routes are declared at start and a2a-sdk is imported by the first A2A request
(gateway/protocols/a2a/routes.py): a gateway, and a worker beside it, start without importing the SDK;
the first call answers as ever; calls that come together first each wait for the one import and are all
answered; the requests after it do not import again."""

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, TaskState

from tests.support.fresh_process import told_by
from tests.support.waiting import eventually
from tokentail.gateway.protocols.a2a import routes
from tokentail.shared.plumbing.settings import Settings

pytestmark = pytest.mark.a2a


# A gateway and a worker in a process of their own (this one imported the SDK long ago): started, what
# they have imported of the SDK; then the first A2A calls, as the wire has them (the SDK's client would
# import the SDK): a blocking SendMessage over JSON-RPC, then the default agent's card.
FIRST_CALL = """
import asyncio, json, sys
import httpx2
from tests.fixtures.stack import Gateway
from tokentail.shared.plumbing.settings import Settings
from tokentail.worker.process.main import create_worker

SEND = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
        "params": {"message": {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "hello there"}]}}}

def of_the_sdk():
    return sorted(name for name in sys.modules if name.partition(".")[0] == "a2a")

async def main():
    settings = Settings()
    gateway = await Gateway(settings).start()
    worker = create_worker(settings, handle_signals=False)
    working = asyncio.create_task(worker.async_run())
    try:
        started = of_the_sdk()
        async with httpx2.AsyncClient(timeout=60, headers={"A2A-Version": "1.0"}) as client:
            sent = await client.post(f"{gateway.url}/a2a/assistant", json=SEND)
            card = await client.get(f"{gateway.url}/.well-known/agent-card.json")
        told = {"started": started, "sent": [sent.status_code, sent.text], "card": [card.status_code, card.text],
                "after": bool(of_the_sdk())}
        print(json.dumps(told))
    finally:
        await worker.close()
        await asyncio.gather(working, return_exceptions=True)
        await gateway.stop()

asyncio.run(main())
"""


async def test_a_gateway_starts_without_the_sdk_and_its_first_calls_are_answered(settings: Settings) -> None:
    told = await told_by(FIRST_CALL, settings)
    assert told["started"] == []  # a gateway and a worker started, and not a module of the SDK imported
    status, body = told["sent"]
    assert status == 200, body
    task = json.loads(body)["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["artifacts"][0]["parts"][0]["text"]
    status, body = told["card"]
    assert status == 200, body
    card = json.loads(body)
    assert card["name"] == "assistant"
    assert [interface["protocolBinding"] for interface in card["supportedInterfaces"]] == ["JSONRPC", "HTTP+JSON"]
    assert told["after"]  # imported by the first call


async def test_calls_that_come_together_first_all_wait_for_the_import_and_are_answered(
    start_gateway: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    imports, go_on = [], threading.Event()  # each import is held (in its thread) until both calls came
    imported = routes._imported

    def held_import() -> Any:
        imports.append(threading.get_ident())
        assert go_on.wait(60), "the test never let the import go on"
        return imported()

    monkeypatch.setattr(routes, "_dispatch", None)  # as in a gateway that no A2A request reached yet
    monkeypatch.setattr(routes, "_imported", held_import)
    gateway = await start_gateway()
    await start_worker()

    async def talk(http: httpx.AsyncClient, card_path: str | None) -> str:
        """a2a-sdk's client, from a card (the first request), then a blocking SendMessage over JSON-RPC."""
        client = await create_client(
            gateway.url, ClientConfig(httpx_client=http, streaming=False), relative_card_path=card_path
        )
        message = Message(message_id="m-1", role=Role.ROLE_USER, parts=[Part(text="hello there")])
        events = [event async for event in client.send_message(SendMessageRequest(message=message))]
        (event,) = events  # a blocking send: the task, ended
        assert event.task.status.state == TaskState.TASK_STATE_COMPLETED
        return str(event.task.artifacts[0].parts[0].text)

    async with httpx.AsyncClient(timeout=60) as http:
        calls = [
            asyncio.create_task(talk(http, None)),
            asyncio.create_task(talk(http, "/a2a/assistant/.well-known/agent-card.json")),
        ]
        try:
            await eventually(lambda: len(imports) >= 2, what="both first calls waiting for the import")
        finally:
            go_on.set()
        answers = await asyncio.gather(*calls)
        assert all(answers)
        assert len(imports) == 2  # the requests after the first ones did not import again
        listed = await http.get(f"{gateway.url}/a2a/assistant/tasks", headers={"A2A-Version": "1.0"})
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["tasks"]) == 2
    assert len(imports) == 2
