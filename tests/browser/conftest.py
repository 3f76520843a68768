"""Headless Chromium (Debian's, driven by Playwright; no browser download) against the in-process stack."""

import os
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
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


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run should have installed it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
async def held_gateway(start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates) -> Gateway:
    """A gateway and the one worker of the test, whose default agent (the demo page's) is `held`
    (tests/support/gates.py): each run the page starts waits halfway through its answer until the test
    releases it (`release_shown_run`). Not with the `worker` fixture, whose runs would not wait."""
    agents = {"assistant": "tests.support.gates:held"}
    await start_worker(agents=agents)
    gateway: Gateway = await start_gateway(agents=agents)
    return gateway
