"""Headless Chromium (Debian's, driven by Playwright; no browser download) against the in-process stack.

One Chromium per test session (per xdist worker), not one per test: launching it was most of a browser
test's CPU. It runs under Playwright's browser server (chromium_server.js); each test connects to it from its
own event loop (Playwright's objects belong to the loop that made them, and pytest-asyncio gives each test a
loop of its own) and makes fresh contexts there (`new_page()`, `new_context()`: their own cookies, storage,
permissions, offline state), which the server closes when the test's connection closes.
"""

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright._impl._driver import compute_driver_executable
from playwright.async_api import Browser, async_playwright

from tests.fixtures.stack import Gateway
from tests.support.gates import Gates

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's closed network refuses Chromium's own traffic
    "--disable-component-update",
    "--disable-sync",
]
SERVER_STOP_WAIT = 30.0  # seconds for the browser server to close Chromium once told to (a loaded machine)


def _chromium_path() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run should have installed it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return chromium


@pytest.fixture(scope="session")
def chromium_endpoint() -> Iterator[str]:
    """The WebSocket endpoint of the session's Chromium, served until the session ends."""
    node, cli = compute_driver_executable()  # the Node and playwright-core the Python package ships
    command = [node, str(Path(__file__).with_name("chromium_server.js")), str(Path(cli).parent)]
    with subprocess.Popen(
        [*command, _chromium_path(), json.dumps(CHROMIUM_FLAGS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        assert server.stdin is not None and server.stdout is not None
        try:
            endpoint = server.stdout.readline().strip()  # its one line once Chromium is up; "" if it died
            if not endpoint.startswith("ws://"):
                raise RuntimeError(f"the Chromium server did not start (exit code {server.wait()})")
            yield endpoint
        finally:
            server.stdin.close()  # its signal to close Chromium and exit
            try:
                server.wait(timeout=SERVER_STOP_WAIT)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture
async def browser(chromium_endpoint: str) -> AsyncIterator[Browser]:
    """The session's Chromium, connected from this test's loop; closing the connection closes the test's contexts."""
    async with async_playwright() as playwright:
        connected = await playwright.chromium.connect(chromium_endpoint)
        yield connected
        await connected.close()


@pytest.fixture
async def held_gateway(start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates) -> Gateway:
    """A gateway and the one worker of the test, whose default agent (the demo page's) is `held`
    (tests/support/gates.py): each run the page starts waits halfway through its answer until the test
    releases it (`release_shown_run`). Not with the `worker` fixture, whose runs would not wait."""
    agents = {"assistant": "tests.support.gates:held"}
    await start_worker(agents=agents)
    gateway: Gateway = await start_gateway(agents=agents)
    return gateway
