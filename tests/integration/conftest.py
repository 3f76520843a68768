"""An in-process stack: real uvicorn on a loopback port and a real arq worker, on the test's loop."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from gateway.app import create_app
from gateway.server import GatewayServer, server_config
from shared.settings import Settings
from tokentail.redis_server import free_port
from worker.main import TokentailWorker, create_worker


class Gateway:
    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = server_config(self.app, settings, "127.0.0.1", self.port, log_level="warning")
        self.server = GatewayServer(config, self.app)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> "Gateway":
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        self.app.state.shutdown.begin()
        self.server.should_exit = True
        if self._task is not None:
            await self._task


@pytest.fixture
async def start_gateway(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    started: list[Gateway] = []

    async def start(**overrides: Any) -> Gateway:
        gateway = await Gateway(settings.model_copy(update=overrides)).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def start_worker(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[TokentailWorker, asyncio.Task[None]]] = []

    async def start(
        probe_address: tuple[str, int] | None = None, arq_options: dict[str, Any] | None = None, **overrides: Any
    ) -> TokentailWorker:
        """A worker with these settings `overrides` (and arq `Worker` options)."""
        worker = create_worker(
            settings.model_copy(update=overrides),
            handle_signals=False,
            probe_address=probe_address,
            **(arq_options or {}),
        )
        started.append((worker, asyncio.create_task(worker.async_run())))
        return worker

    yield start
    for worker, task in started:
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def gateway(start_gateway: Callable[..., Any]) -> Gateway:
    gateway: Gateway = await start_gateway()
    return gateway


@pytest.fixture
async def worker(start_worker: Callable[..., Any]) -> TokentailWorker:
    worker: TokentailWorker = await start_worker()
    return worker


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=httpx2.Timeout(10.0)) as client:
        yield client
