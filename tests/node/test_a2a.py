"""npm `@a2a-js/sdk` (pinned by this folder's lockfile) against two tokentail gateways and workers, real
processes, as docs/a2a.md configures it: a stream dropped and resumed on the other gateway (after a
worker's kill -9 too), a question answered from the other gateway, a cancel from there, push configs
delivered to a receiver, a wrong key."""

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agents.asking_agent import AFTER_THE_ANSWER, BEFORE_THE_QUESTION
from tests.agents.counting_agents import own_answer
from tests.e2e.conftest import Stack
from tests.node.conftest import API_KEY, ChatStack, run_node
from tests.servers.webhook_receiver import Delivery, Receiver
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.a2a


AGENTS = {
    "stepping": "tests.agents.counting_agents:stepping",  # streams word by word for about 9 s, @continues
    "asking": "tests.agents.asking_agent:ask_then_answer",
    "slow": "tests.agents.slow_agent:slow_tool_agent",
}
HOOKS = "/a2a-hooks/"


class ThreadedReceiver:
    """tests/servers/webhook_receiver.py's receiver, on a loop of its own: the Node client runs meanwhile."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with self.receiver:
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        return self.receiver

    def __exit__(self, *exc: Any) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with ThreadedReceiver() as receiver:
        yield receiver


@pytest.fixture
def agents(tmp_path: Path, receiver: Receiver) -> Iterator[ChatStack]:
    (tmp_path / "runs").touch()
    stack = Stack(
        tmp_path,
        TOKENTAIL_AGENTS=json.dumps(AGENTS),
        TOKENTAIL_API_KEYS=f"acme:{API_KEY}",
        TOKENTAIL_SECRET="node-tests-secret-" + "x" * 32,
        TOKENTAIL_LEASE_MS="1500",  # a killed worker's run is taken over within about 2 s
        TOKENTAIL_WEBHOOK_ALLOWED_URLS=receiver.url + HOOKS,
        TOKENTAIL_TEST_TOOL_RUNS=str(tmp_path / "runs"),
    )
    try:
        chats = ChatStack(stack)
        try:
            yield chats
        finally:
            chats.http.close()
    finally:
        stack.close()


def options(agents: ChatStack, agent: str, receiver: Receiver | None = None) -> dict[str, Any]:
    hook = receiver.url + HOOKS + "node" if receiver else None
    return {"gateways": [agents.url, agents.stack.gateway()], "apiKey": API_KEY, "agent": agent, "hook": hook}


def check_resumed(result: dict[str, Any]) -> None:
    assert result["opensWith"] == "task" and result["openedAt"] == result["lastSeen"]
    assert result["openedText"] == result["keptText"], "the Task as the client had it"
    first = result["generations"][0]
    assert result["generations"] == list(range(first, first + len(result["generations"]))), "no gap, none twice"
    assert result["text"] == own_answer(42) and result["state"] == "TASK_STATE_COMPLETED"
    assert result["got"] == {"state": "TASK_STATE_COMPLETED", "text": own_answer(42)}


def test_a_dropped_stream_resumes_on_the_other_gateway(agents: ChatStack) -> None:
    check_resumed(run_node("a2a.mjs", "resume", options(agents, "stepping")).result)


def test_after_its_worker_is_killed_the_task_completes_once(agents: ChatStack) -> None:
    def crash(step: dict[str, Any]) -> None:
        if step["step"] == "cut":
            agents.crash_worker()

    check_resumed(run_node("a2a.mjs", "resume", options(agents, "stepping"), on_step=crash).result)


def test_a_question_answered_from_the_other_gateway(agents: ChatStack) -> None:
    result = run_node("a2a.mjs", "question", options(agents, "asking")).result
    assert (result["asked"], result["prompt"]) == ("TASK_STATE_INPUT_REQUIRED", "Delete 3 files?")
    assert result["needs"]["kind"] == "approval"
    words = "".join(f"Word {word}. " for word in range(AFTER_THE_ANSWER))
    assert result["answered"] == "TASK_STATE_COMPLETED" and result["text"] == BEFORE_THE_QUESTION + words


def test_cancel_push_configs_and_a_wrong_key(agents: ChatStack, receiver: Receiver) -> None:
    result = run_node("a2a.mjs", "cancel", options(agents, "slow", receiver)).result
    assert result["started"] in ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING")
    assert result["cancelled"] == "TASK_STATE_CANCELED"
    assert result["config"]["id"] == "hook-1" and result["listed"] == ["hook-1"]
    assert result["refused"] is not None and "401" in result["refused"]["message"]

    def delivered() -> Delivery:
        assert receiver.accepted(), "no delivery yet"
        return receiver.accepted()[0]

    delivery = eventually_sync(delivered, within=20)
    assert delivery.headers["authorization"] == "Bearer receiver-secret"
    body = json.loads(delivery.body)
    assert body["statusUpdate"]["status"]["state"] == "TASK_STATE_CANCELED"
