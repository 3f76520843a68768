"""Webhooks through a gateway and a worker, to a receiver on loopback: signed as Standard Webhooks
says (verified with its own library), retried after an error, accepted once per event id."""

import asyncio
import contextlib
import json
import re
from collections import Counter
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from tests.clients.sse_client import read_events
from tests.fixtures.stack import Gateway
from tests.integration.test_auth import KEY_A, KEY_B, SECRET, bearer
from tests.integration.test_questions import AGENTS
from tests.servers.webhook_receiver import Receiver
from tests.support.sessions import waiting_for_input
from tests.support.waiting import eventually
from tokentail.redis_server import free_port
from tokentail.worker import metrics

HOOKS = "/hooks/"


async def _stack(start_gateway: Any, start_worker: Any, receiver: Receiver, **overrides: Any) -> Gateway:
    settings = {
        "agents": {**AGENTS, "held": "tests.support.gates:held"},
        "webhook_allowed_urls": [receiver.url + HOOKS],
        **overrides,
    }
    gateway: Gateway = await start_gateway(**settings)
    await start_worker(**settings)
    return gateway


@pytest.mark.usefixtures("gates")
async def test_run_ends_and_questions_are_signed_retried_and_accepted_once(
    start_gateway: Any, start_worker: Any
) -> None:
    async with Receiver(refuse_first=1) as receiver:
        gateway = await _stack(start_gateway, start_worker, receiver)
        async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
            config = (await client.put("/v1/webhook", json={"url": receiver.url + HOOKS + "tenant"})).json()
            assert config["url"].endswith("/hooks/tenant") and config["secret"].startswith("whsec_")
            assert (await client.get("/v1/webhook")).json() == config

            done = (await client.post("/v1/sessions", json={"input": "hi", "params": {"tokens": 5}})).json()
            failing = {
                "input": "x",
                "params": {"tokens": 5, "fail_at_token": 2},
                "webhook": receiver.url + HOOKS + "own",
            }
            failed = (await client.post("/v1/sessions", json=failing)).json()
            held = {"input": "slow", "agent": "held"}  # waits at its gate (tests/support/gates.py) for the cancel
            cancelled = (await client.post("/v1/sessions", json=held)).json()
            asking = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()

            question = (await waiting_for_input(client, f"/v1/sessions/{asking['session_id']}"))["pending_input"]
            url = f"/v1/sessions/{asking['session_id']}/runs/{asking['run_id']}/input"
            answer = {"input_id": question["input_id"], "answer": {"approved": True}}
            assert (await client.post(url, json=answer)).status_code == 202
            await eventually(lambda: _started(client, cancelled), what="the held run started")
            assert (await client.post(f"/v1/sessions/{cancelled['session_id']}/cancel")).status_code == 202

            expected = 5  # completed, failed, cancelled, input.required, completed
            await eventually(lambda: len(receiver.accepted()) == expected, within=30, what="every event delivered")
            await asyncio.sleep(1.5)  # no late repeat of an accepted event
            streams = {s["session_id"]: await read_events(client, s["events_url"]) for s in (done, asking)}

    assert len(receiver.accepted()) == expected
    attempts = Counter(d.webhook_id for d in receiver.deliveries)
    assert set(attempts.values()) == {2}, attempts  # refused once, then accepted: the same id each time
    verifier = Webhook(config["secret"])
    payloads = [verifier.verify(d.body, d.headers) for d in receiver.deliveries]  # every attempt is signed
    by_id: dict[str, list[bytes]] = {}
    for delivery in receiver.deliveries:
        by_id.setdefault(delivery.webhook_id, []).append(delivery.body)
    assert all(len(set(bodies)) == 1 for bodies in by_id.values()), "a retry carries the same payload"

    reported = {(p["session_id"], p["type"]): p for p in payloads}
    assert {(p["session_id"], p["type"]) for p in payloads} == {
        (done["session_id"], "run.completed"),
        (failed["session_id"], "run.failed"),
        (cancelled["session_id"], "run.cancelled"),
        (asking["session_id"], "input.required"),
        (asking["session_id"], "run.completed"),
    }
    paths = {d.path for d in receiver.deliveries if json.loads(d.body)["session_id"] == failed["session_id"]}
    assert paths == {HOOKS + "own"}, "a session's own URL wins over its tenant's"

    # Each payload is the stream's event: same id, same data (the output added back).
    for session in (done, asking):
        for event_id, kind, data in streams[session["session_id"]].events:
            payload = reported.get((session["session_id"], kind))
            if payload is not None and payload["event_id"] == str(event_id):
                assert payload["data"] == data
    completed = reported[(done["session_id"], "run.completed")]
    assert completed["data"]["output"] and completed["data"]["run_id"] == done["run_id"]
    assert reported[(asking["session_id"], "input.required")]["data"]["input_id"] == question["input_id"]
    for (session_id, _), payload in reported.items():
        assert by_id[f"{session_id}.{payload['event_id']}"], "webhook-id is <session_id>.<event_id>"
    assert reported[(failed["session_id"], "run.failed")]["data"]["error"]["type"]


async def _started(client: httpx2.AsyncClient, session: dict[str, Any]) -> bool:
    return bool((await client.get(f"/v1/sessions/{session['session_id']}")).json()["status"] == "running")


async def test_a_receiver_that_never_accepts_is_given_up_and_the_run_does_not_wait(
    start_gateway: Any, start_worker: Any
) -> None:
    async with Receiver(always_refuse=True) as receiver:
        gateway = await _stack(start_gateway, start_worker, receiver, webhook_retry_seconds=3)
        gave_up = metrics.WEBHOOK_DELIVERIES.labels("gave_up")._value.get()
        async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
            body = {"input": "hi", "params": {"tokens": 3}, "webhook": receiver.url + HOOKS}
            made = (await client.post("/v1/sessions", json=body)).json()
            received = await read_events(client, made["events_url"])  # the run ends while its webhook fails
            assert received.events[-1][1] == "run.completed"
            await eventually(
                lambda: metrics.WEBHOOK_DELIVERIES.labels("gave_up")._value.get() == gave_up + 1,
                within=15,
                what="the webhook given up",
            )
            tries = len(receiver.deliveries)
            await asyncio.sleep(2)
    assert tries >= 2 and len(receiver.deliveries) == tries, "retried, then no more"


async def test_webhook_urls_outside_the_operators_allowlist_are_refused(start_gateway: Any) -> None:
    allowed = "https://hooks.example.com/tokentail/"
    gateway = await start_gateway(webhook_allowed_urls=[allowed])
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
        for url in [
            "http://hooks.example.com/tokentail/x",  # another scheme
            "https://hooks.example.com:8443/tokentail/x",  # another port
            "https://hooks.example.com.evil.io/tokentail/x",
            "https://hooks.example.com/tokentailx",  # not under the path
            "https://user:pw@hooks.example.com/tokentail/x",
            "http://169.254.169.254/latest/meta-data/",
            "file:///etc/passwd",
            "https://hooks.example.com/tokentail/../../admin/x",  # the client would post to /admin/x
            "https://hooks.example.com/tokentail/%2e%2e/admin",
            "https://hooks.example.com/tokentail/x\ny",  # a control character: an error every minute, for a day
            "https://hooks.example.com/tokentail/\tx",
        ]:
            for answer in [
                await client.put("/v1/webhook", json={"url": url}),
                await client.post("/v1/sessions", json={"webhook": url}),
            ]:
                assert answer.status_code == 422, url
                assert answer.json()["error"]["type"] == "validation_error"
        ok = await client.put("/v1/webhook", json={"url": allowed + "a?b=c"})
        assert ok.status_code == 200
    off = await start_gateway()
    async with httpx2.AsyncClient(base_url=off.url, timeout=10) as client:
        refused = await client.put("/v1/webhook", json={"url": allowed})
        assert refused.status_code == 422 and "off" in refused.json()["error"]["message"]


@pytest.mark.parametrize("rotate", [False, True])
async def test_the_tenants_secret_is_kept_unless_rotated(start_gateway: Any, rotate: bool) -> None:
    gateway = await start_gateway(webhook_allowed_urls=["https://hooks.example.com/"])
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
        first = (await client.get("/v1/webhook")).json()
        assert first["url"] is None
        put = await client.put("/v1/webhook", json={"url": "https://hooks.example.com/a", "rotate_secret": rotate})
        assert (put.json()["secret"] == first["secret"]) is not rotate
        assert (await client.delete("/v1/webhook")).status_code == 204
        after = (await client.get("/v1/webhook")).json()
        assert after["url"] is None and after["secret"] == put.json()["secret"]


class HostileReceiver:
    """A receiver on a raw socket that answers as an attacker's would: an endless body after a 200, or
    a status line trickled a byte at a time, never done. Counts what it sent and the requests it got."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests = 0
        self.sent = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await self._answer(reader, writer)
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(re.search(rb"(?i)content-length: *(\d+)", head)[1]))  # type: ignore[index]
            self.requests += 1
            if self.answer == "endless":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n")
                chunk = b"x" * 65_536
                while True:
                    writer.write(chunk)
                    await writer.drain()
                    self.sent += len(chunk)
            for byte in b"HTTP/1.1 200 OK\r\n":  # trickle: one byte a second, and never the end of the head
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)
            await asyncio.sleep(3600)

    async def __aenter__(self) -> "HostileReceiver":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)


async def test_a_receiver_answering_without_end_is_delivered_without_its_answer_being_read(
    start_gateway: Any, start_worker: Any
) -> None:
    # The answer was read whole: a receiver answering 1 GiB took a worker from 63 MB to 2 GB.
    async with HostileReceiver("endless") as hostile:
        settings = {"webhook_allowed_urls": [hostile.url + HOOKS], "webhook_timeout_seconds": 5}
        gateway: Gateway = await start_gateway(**settings)
        await start_worker(**settings)
        delivered = metrics.WEBHOOK_DELIVERIES.labels("delivered")._value.get()
        async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
            body = {"input": "hi", "params": {"tokens": 3}, "webhook": hostile.url + HOOKS}
            await read_events(client, (await client.post("/v1/sessions", json=body)).json()["events_url"])
            await eventually(
                lambda: metrics.WEBHOOK_DELIVERIES.labels("delivered")._value.get() == delivered + 1,
                within=4,  # before the attempt's deadline: its 200 is enough, nothing of the body is awaited
                what="the 200 taken as delivered",
            )
    assert hostile.requests == 1 and hostile.sent < 16 * 2**20, f"the worker took {hostile.sent} bytes of the answer"


async def test_one_tenant_s_trickling_receivers_delay_only_its_own_webhooks(
    start_gateway: Any, start_worker: Any
) -> None:
    # 40 receivers trickling their answer held every delivery slot: another tenant waited 150 s.
    async with HostileReceiver("trickle") as hostile, Receiver() as receiver:
        settings = {
            "api_keys": SecretStr(f"acme:{KEY_A},beta:{KEY_B}"),
            "secret": SecretStr(SECRET),
            "webhook_allowed_urls": [hostile.url + HOOKS, receiver.url + HOOKS],
            "webhook_timeout_seconds": 3,
        }
        gateway: Gateway = await start_gateway(**settings)
        await start_worker(**settings)
        async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
            slow = {"input": "hi", "params": {"tokens": 2}, "webhook": hostile.url + HOOKS}
            for _ in range(40):
                assert (await client.post("/v1/sessions", json=slow, headers=bearer(KEY_A))).status_code == 201
            await eventually(lambda: hostile.requests >= 4, within=10, what="acme's receivers are being posted to")
            fast = {"input": "hi", "params": {"tokens": 2}, "webhook": receiver.url + HOOKS}
            made = (await client.post("/v1/sessions", json=fast, headers=bearer(KEY_B))).json()
            await eventually(lambda: len(receiver.accepted()) == 1, within=3, what="beta's webhook, without waiting")
            assert receiver.accepted()[0].headers["webhook-id"].startswith(made["session_id"])
            # And each of acme's attempts ends at its deadline, however slowly its receiver answers.
            await eventually(lambda: hostile.requests >= 8, within=10, what="acme's next attempts")
