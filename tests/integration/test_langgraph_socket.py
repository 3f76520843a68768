"""The v2 WebSocket's subscriptions are bounded: `MAX_SUBSCRIPTIONS` on one socket, and each holds one
of its tenant's (and stream token's) stream slots besides the socket's own. A subscribe past either is
answered with the protocol's error, and the socket goes on. Real redis-server, uvicorn on loopback."""

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from pydantic import SecretStr
from redis.asyncio import Redis

from tests.fixtures.stack import Gateway
from tests.support.waiting import eventually
from tokentail.gateway.protocols.langgraph.v2.socket import MAX_SUBSCRIPTIONS
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys

pytestmark = pytest.mark.langgraph

KEY = "acme-key-0123456789abcdef"
AUTH = {"api_keys": SecretStr(f"acme:{KEY}"), "secret": SecretStr("s" * 40)}


class ThreadSocket:
    """The v2 socket of one thread, spoken as the SDK does: a command, then its response."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.ids = 0

    async def command(self, method: str, **params: Any) -> dict[str, Any]:
        self.ids += 1
        await self.socket.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:  # (a subscription's events may come first)
            frame: dict[str, Any] = json.loads(await self.socket.recv())
            if frame.get("id") == self.ids and frame["type"] in ("success", "error"):
                return frame

    async def subscribe(self) -> dict[str, Any]:
        return await self.command("subscription.subscribe", channels=["lifecycle"])


async def thread_of(gateway: Gateway, thread_id: str, scope: str = "read") -> str:
    """A thread (a chat's session) made with an API key; a chat token of it."""
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        made = await http.post("/v1/sessions", json={"chat_id": thread_id, "token_scope": "chat"})
    made.raise_for_status()
    token: str = made.json()["stream_token"]
    return token


def socket_url(gateway: Gateway, thread_id: str) -> str:
    return gateway.url.replace("http://", "ws://") + f"/langgraph/threads/{thread_id}/stream/events"


async def test_one_socket_holds_a_bounded_number_of_subscriptions_each_a_stream_slot(
    start_gateway: Callable[..., Any], redis: Redis, settings: Settings
) -> None:
    gateway = await start_gateway(**AUTH)
    await thread_of(gateway, "many")
    held = Keys(settings.key_prefix).tenant_streams("acme")
    headers = {"Authorization": f"Bearer {KEY}"}
    async with websockets.connect(socket_url(gateway, "many"), additional_headers=headers) as raw:
        socket = ThreadSocket(raw)
        subscribed = [await socket.subscribe() for _ in range(MAX_SUBSCRIPTIONS)]
        assert all(frame["type"] == "success" for frame in subscribed)
        assert await redis.zcard(held) == 1 + MAX_SUBSCRIPTIONS, "the socket's slot and one per subscription"
        refused = await socket.subscribe()
        assert refused["type"] == "error" and refused["error"] == "invalid_argument"
        assert refused["message"].startswith("too_many_subscriptions")
        # The socket goes on: one unsubscribed makes room for another.
        first = subscribed[0]["result"]["subscription_id"]
        assert (await socket.command("subscription.unsubscribe", subscription_id=first))["type"] == "success"
        assert (await socket.subscribe())["type"] == "success"
    await eventually(lambda: _none_held(redis, held))


async def test_a_stream_tokens_subscriptions_count_against_its_streams(
    start_gateway: Callable[..., Any], redis: Redis, settings: Settings
) -> None:
    gateway = await start_gateway(max_streams_per_token=3, **AUTH)
    token = await thread_of(gateway, "browser")
    async with websockets.connect(socket_url(gateway, "browser") + f"?token={token}") as raw:
        socket = ThreadSocket(raw)
        assert [(await socket.subscribe())["type"] for _ in range(2)] == ["success", "success"]  # 3 with the socket
        refused = await socket.subscribe()  # after the wait for a slot (2 s)
        assert refused["type"] == "error" and "this stream token has 3 streams open" in refused["message"]
        assert (await socket.command("subscription.unsubscribe", subscription_id="sub-1"))["type"] == "success"
        assert (await socket.subscribe())["type"] == "success"
    await eventually(lambda: _none_held(redis, Keys(settings.key_prefix).tenant_streams("acme")))


async def _none_held(redis: Redis, key: str) -> bool:
    held: int = await redis.zcard(key)
    return held == 0
