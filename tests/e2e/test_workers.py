"""Workers started as the README starts them."""

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import httpx2

from tests.e2e.conftest import Stack
from tests.support.waiting import eventually_sync


def _probe_port(worker: subprocess.Popen[bytes], log: Path) -> int:
    """The port a worker serves its probes on, from the line it logs at start."""

    def logged() -> int:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.returncode}): {log.read_text()}")
        found = re.search(r"worker probes: http://[^:]+:(\d+)/", log.read_text())
        assert found, "the worker did not serve its probes"
        return int(found.group(1))

    return eventually_sync(logged, within=20)


def test_several_workers_on_one_host_all_run(stack: Stack, tmp_path: Path) -> None:
    # `tokentail worker`, twice, with no options: both want the probes' default port.
    env = {**stack.env, "TOKENTAIL_LOG_LEVEL": "info"}
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = []
    for log in logs:
        with log.open("wb") as output:
            workers.append(subprocess.Popen([sys.executable, "-m", "tokentail.cli", "worker"], env=env, stderr=output))
    stack.processes += workers
    ports = [_probe_port(worker, log) for worker, log in zip(workers, logs, strict=True)]
    assert len(set(ports)) == 2
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
    stack.wait_for_workers(2)
    url = stack.gateway()
    with httpx2.Client(base_url=url, timeout=10) as client:
        body = {"input": "q", "params": {"tokens": 3}}
        sessions = [client.post("/v1/sessions", json=body).json() for _ in range(4)]

        def all_idle() -> None:
            statuses = [client.get(f"/v1/sessions/{session['session_id']}").json()["status"] for session in sessions]
            assert statuses == ["idle"] * len(sessions), "a run did not finish"

        eventually_sync(all_idle, within=20)
    assert [worker.poll() for worker in workers] == [None, None]


def test_a_worker_and_a_gateway_refuse_to_start_with_an_agent_they_cannot_import(stack: Stack) -> None:
    # Told at start, naming the path and the missing package, not by the first run that uses the agent.
    cases = {
        "worker": ('{"support": "tests.agents.agent_missing_a_package:agent"}', "'tokentail_test_no_such_package'"),
        "gateway": ('{"support": "tests.no_such_module:agent"}', "no module 'tests.no_such_module'"),
    }
    for command, (agents, said) in cases.items():
        env = {**stack.env, "TOKENTAIL_AGENTS": agents}
        done = subprocess.run(
            [sys.executable, "-m", "tokentail.cli", command, "--port", "0"], env=env, capture_output=True, timeout=60
        )
        assert done.returncode == 1, done.stderr
        assert said in done.stderr.decode() and "agent 'support'" in done.stderr.decode(), done.stderr
