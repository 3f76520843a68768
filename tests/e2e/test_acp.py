"""ACP at /acp with the official Python client, against two gateways and a worker as separate processes:
the gateway serving a connection killed -9 mid-answer, a new connection to the other gateway loads the
session and sees the whole answer once; a worker killed -9 mid-answer, the turn ends `end_turn` with
its answer once and its step (a side effect, counted) done once."""

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from acp import text_block

from tests.agents.counting_agents import own_answer
from tests.e2e.conftest import Stack
from tests.integration.test_acp import Editor, connected_to
from tests.support.waiting import eventually
from tokentail.worker.providers.scripted import DEFAULT_TOKENS, scripted_tokens

pytestmark = pytest.mark.acp

AGENTS = json.dumps({"held": "tests.support.gates:held", "stepping": "tests.agents.counting_agents:stepping_held"})


@pytest.fixture
def tool_runs(tmp_path: Path) -> Path:
    """Where the counting agents note each run of a side effect (tests/agents/counting_agents.py)."""
    runs = tmp_path / "tool-runs"
    runs.touch()
    return runs


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory, tool_runs: Path) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("acp"),
        TOKENTAIL_AGENTS=AGENTS,
        TOKENTAIL_LEASE_MS="1500",
        TOKENTAIL_TEST_TOOL_RUNS=str(tool_runs),
    )
    try:
        yield stack
    finally:
        stack.close()


async def _output(url: str, session_id: str) -> str:
    async with httpx2.AsyncClient(base_url=url, timeout=30) as rest:
        state = (await rest.get(f"/v1/sessions/{session_id}")).json()
    assert state["status"] == "idle", state
    return str(state["runs"][0]["output"])


async def test_a_session_whose_gateway_was_killed_loads_on_the_other_with_its_answer_once(stack: Stack) -> None:
    first, second = stack.gateway(), stack.gateway()
    stack.worker()
    stack.wait_for_workers(1)
    editor = Editor()
    async with connected_to(f"{first}/acp?agent=held", editor) as connection:
        session = await connection.new_session(cwd="/work", mcp_servers=[])
        turn = asyncio.create_task(connection.prompt(session_id=session.session_id, prompt=[text_block("tell me")]))
        run_id = await eventually(lambda: _held(stack), what="the run at its gate, half its answer said")
        os.kill(stack.gateways[first].pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(turn, 30)  # the client's connection is gone with its gateway
    tokens = scripted_tokens("tell me", DEFAULT_TOKENS)
    half = "".join(tokens[: len(tokens) // 2])

    again = Editor()
    async with connected_to(f"{second}/acp", again, ws=True) as connection:
        # Loaded while the turn is still going: its first half replayed, then the rest as it comes.
        await connection.load_session(cwd="/work", session_id=session.session_id, mcp_servers=[])
        await eventually(lambda: again.said() == half, what="the first half replayed")
        stack.gates.release(run_id)
        await eventually(lambda: _ended(second, session.session_id), what="the run's end")
        answer = await _output(second, session.session_id)
        await eventually(lambda: again.said() == answer, what="the whole answer, once")
    assert answer == "".join(tokens)


async def test_a_turn_whose_worker_was_killed_ends_with_its_answer_once_and_its_step_done_once(
    stack: Stack, tool_runs: Path
) -> None:
    url = stack.gateway()
    worker = stack.worker()
    stack.wait_for_workers(1)
    editor = Editor()
    async with connected_to(f"{url}/acp?agent=stepping", editor) as connection:
        session = await connection.new_session(cwd="/work", mcp_servers=[])
        turn = asyncio.create_task(connection.prompt(session_id=session.session_id, prompt=[text_block("tell me")]))
        run_id = await eventually(lambda: _held(stack), what="the run at its gate")
        os.kill(worker.pid, signal.SIGKILL)
        stack.gates.release(run_id)
        stack.worker()  # takes the run over
        done = await asyncio.wait_for(turn, 90)
        assert done.stop_reason == "end_turn"
        assert editor.said() == await _output(url, session.session_id) == own_answer(42)
    ran = (await asyncio.to_thread(tool_runs.read_text)).split()
    assert ran == [f"step-{run_id}"]  # its step, recorded, replayed: not done again


def _held(stack: Stack) -> str:
    held = [path.name.split(".")[0] for path in stack.gates.folder.glob("*.reached")]
    assert held, "no run at its gate yet"
    return held[0]


async def _ended(url: str, session_id: str) -> bool:
    async with httpx2.AsyncClient(base_url=url, timeout=30) as rest:
        return bool((await rest.get(f"/v1/sessions/{session_id}")).json()["status"] == "idle")
