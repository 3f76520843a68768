"""Real processes: a redis-server, `tokentail gateway` and `tokentail worker`, as users run them."""

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from redis import Redis

from tests.e2e.fake_llm_server import REQUESTS, app, clear_hold
from tests.gates import Gates
from tests.redis_cluster import LocalCluster, require
from tests.waiting import eventually, eventually_sync
from tokentail.redis_server import RedisServer, free_port
from tokentail.shared.keys import Keys


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} was ready")
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)

    eventually_sync(ready, within=timeout, ignoring=(OSError,), what=f"{url} ready")


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Stack:
    """One redis-server, gateways and workers; each a child process of the test. `gates` holds its
    workers' gated runs (tests/gates.py)."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.redis = RedisServer(data_dir, appendonly=True).start()  # AOF, as production should run
        self.gates = Gates(data_dir / "gates")
        self.env = {
            **os.environ,
            "TOKENTAIL_REDIS_URL": self.redis.url,
            "TOKENTAIL_KEY_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",
            "TOKENTAIL_LOG_LEVEL": "warning",
            **self.gates.env,
            **env,
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.gateways: dict[str, subprocess.Popen[bytes]] = {}  # by URL

    def _spawn(self, *args: str, env: dict[str, str], output: Path | None = None) -> subprocess.Popen[bytes]:
        """`tokentail args` with the stack's environment and `env`; its stdout and stderr to the file
        `output`, else to the test's."""
        command, environment = [sys.executable, "-m", "tokentail.cli", *args], {**self.env, **env}
        if output is None:
            process = subprocess.Popen(command, env=environment)
        else:
            with output.open("wb") as sink:
                process = subprocess.Popen(command, env=environment, stdout=sink, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def gateway(self, **env: str) -> str:
        port = free_port()
        process = self._spawn("gateway", "--host", "127.0.0.1", "--port", str(port), env=env)
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(f"{url}/readyz", process)
        self.gateways[url] = process
        return url

    def worker(self, output: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
        # Each on a port of its own for its probes, as each container would have 9100 to itself.
        return self._spawn("worker", "--host", "127.0.0.1", "--port", str(free_port()), env=env, output=output)

    def wait_for_workers(self, count: int, timeout: float = 20.0) -> None:
        """Until `count` workers listen for cancels, i.e. have started and can take jobs."""
        channel = Keys(self.env["TOKENTAIL_KEY_PREFIX"]).cancel_channel
        with Redis.from_url(self.env["TOKENTAIL_REDIS_URL"]) as client:  # with a cluster, the node they listen on
            eventually_sync(
                lambda: client.pubsub_numsub(channel)[0][1] >= count, within=timeout, what=f"{count} workers started"
            )

    def close(self) -> None:
        self.gates.release_all()  # a run a failed test left held ends as its worker stops
        for process in self.processes:
            stop(process)
        self.redis.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    yield stack
    stack.close()


@pytest.fixture
def cluster_stack(tmp_path: Path) -> Iterator[Stack]:
    """Sessions on a local Redis Cluster of three primaries; the stack's own redis-server holds the queue."""
    require()
    with LocalCluster(tmp_path / "cluster") as cluster:
        stack = Stack(tmp_path)
        stack.env |= {
            "TOKENTAIL_REDIS_URL": cluster.url,
            "TOKENTAIL_REDIS_CLUSTER": "true",
            "TOKENTAIL_QUEUE_REDIS_URL": stack.redis.url,
        }
        yield stack
        stack.close()


@pytest.fixture
async def llm_url() -> AsyncIterator[str]:
    """The fake OpenAI and Anthropic server (tests/e2e/fake_llm_server.py) on loopback, its requests cleared."""
    REQUESTS.clear()
    clear_hold()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    yield f"http://127.0.0.1:{port}"
    clear_hold()  # a held answer's response ends, so the server can stop
    server.should_exit = True
    await task
