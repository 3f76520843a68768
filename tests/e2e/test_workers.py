"""Workers started as the README starts them."""

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx2

from tests.e2e.conftest import Stack


def _probe_port(worker: subprocess.Popen[bytes], log: Path) -> int:
    """The port a worker serves its probes on, from the line it logs at start."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if found := re.search(r"worker probes: http://[^:]+:(\d+)/", log.read_text()):
            return int(found.group(1))
        assert worker.poll() is None, f"the worker exited ({worker.returncode}): {log.read_text()}"
        time.sleep(0.05)
    raise AssertionError("the worker did not serve its probes")


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
        deadline = time.monotonic() + 20
        for session in sessions:
            while client.get(f"/v1/sessions/{session['session_id']}").json()["status"] != "idle":
                assert time.monotonic() < deadline, "a run did not finish"
                time.sleep(0.05)
    assert [worker.poll() for worker in workers] == [None, None]
