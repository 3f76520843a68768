"""The pages (the demo, the console, useChat's) in headless Chromium (the `browser` fixture:
tests/fixtures/chromium.py) against the in-process stack."""

from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.stack import Gateway
from tests.support.gates import Gates


@pytest.fixture
async def held_gateway(start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates) -> Gateway:
    """A gateway and the one worker of the test, whose default agent (the demo page's) is `held`
    (tests/support/gates.py): each run the page starts waits halfway through its answer until the test
    releases it (`release_shown_run`). Not with the `worker` fixture, whose runs would not wait."""
    agents = {"assistant": "tests.support.gates:held"}
    await start_worker(agents=agents)
    gateway: Gateway = await start_gateway(agents=agents)
    return gateway
