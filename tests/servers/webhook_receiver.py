"""A webhook receiver on loopback (real uvicorn), that records each delivery and answers as told:
an error for the first attempts at each webhook id, or no answer at all to the first request."""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokentail.redis_server import free_port


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self, refuse_first: int = 0, stall_first: bool = False, always_refuse: bool = False) -> None:
        self.refuse_first = refuse_first
        self.stall_first = stall_first
        self.always_refuse = always_refuse
        self.deliveries: list[Delivery] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        if self.stall_first and not self.deliveries:
            self.deliveries.append(Delivery(request.url.path, headers, body, 0))
            await self._closing.wait()  # no answer while the test runs: its deliverer is killed meanwhile
            return Response(status_code=503)
        earlier = sum(d.webhook_id == headers.get("webhook-id") for d in self.deliveries)
        status = 500 if self.always_refuse or earlier < self.refuse_first else 204
        self.deliveries.append(Delivery(request.url.path, headers, body, status))
        return Response(status_code=status)

    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if 200 <= d.status < 300]

    async def __aenter__(self) -> "Receiver":
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._closing.set()
        self._server.should_exit = True
        if self._task is not None:
            await self._task
