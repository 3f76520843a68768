"""The worker's event-loop watchdog (worker/process/watchdog.py): a run whose agent blocks the loop is named
while it blocks and failed once the loop runs again; the worker's other runs go on."""

import logging
from typing import Any

import httpx2
import pytest

from tests.clients.sse_client import read_events

AGENTS = {"blocking": "tests.agents.slow_agent:blocking_agent"}


async def test_a_run_that_blocks_the_worker_s_loop_is_named_and_failed_and_the_others_go_on(
    start_gateway: Any, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS, blocked_loop_seconds=1.5)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        steady = (await client.post("/v1/sessions", json={"input": "hi", "params": {"tokens": 60}})).json()
        blocking = (await client.post("/v1/sessions", json={"input": "2.5", "agent": "blocking"})).json()
        blocked = await read_events(client, blocking["events_url"])
        steadied = await read_events(client, steady["events_url"])
    error = blocked.events[-1][2]["error"]
    assert blocked.events[-1][1] == "run.failed" and error["type"] == "blocked_event_loop", blocked.events[-1]
    assert "asyncio.to_thread" in error["message"] and "ainvoke" in error["message"]
    assert [kind for _, kind, _ in steadied.events].count("run.retrying") == 0
    assert steadied.events[-1][1] == "run.completed"  # stalled meanwhile, as every run of that worker was
    named = [
        r.getMessage()
        for r in caplog.records
        if r.name == "tokentail.worker.process.watchdog" and r.levelno == logging.ERROR
    ]
    assert named and blocking["run_id"] in named[0] and blocking["session_id"] in named[0], named
