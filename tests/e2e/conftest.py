"""Real processes: a redis-server, `tokentail gateway` and `tokentail worker`, as users run them."""

import asyncio
import os
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from redis import Redis

from tests.e2e.fake_llm_server import REQUESTS, app, clear_hold
from tests.servers.redis_cluster import require
from tests.support import measured_start
from tests.support.gates import Gates
from tests.support.waiting import eventually, eventually_sync, scaled
from tokentail.redis_server import LocalCluster, RedisServer, free_port
from tokentail.shared.store.keys import Keys


class PortTaken(RuntimeError):
    """The server could not have its port: another test's took it between free_port() and its bind."""


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Until `process` answers at `url`: itself, not another test's server that took the same port
    meanwhile (which answers as well, while this one fails to bind and exits: PortTaken)."""
    port = int(url.rsplit(":", 1)[1].partition("/")[0])

    def ready() -> bool:
        if process.poll() is not None:
            if not listens(process.pid, port) and _listening(port):
                raise PortTaken(f"port {port} was taken by another process before {url} could bind it")
            raise RuntimeError(f"process exited with {process.returncode} before {url} was ready")
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200) and listens(process.pid, port)

    eventually_sync(ready, within=timeout, ignoring=(OSError,), what=f"{url} ready")


def _listening(port: int) -> set[str]:
    """The inodes of the sockets listening on `port` (Linux's /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:  # 0A: LISTEN
            inodes.add(fields[9])
    return inodes


def listens(pid: int, port: int) -> bool:
    """Whether process `pid`, or one it started (`tokentail dev`'s gateway), holds a socket listening on `port`."""
    inodes = _listening(port)
    for member in _family(pid):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{member}/fd").iterdir()]
        except OSError:  # it exited, or its fds are not ours to read
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            return True
    return False


def _family(pid: int) -> set[int]:
    """`pid` and its descendants."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    family, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                grew = True
    return family


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
    workers' gated runs (tests/support/gates.py)."""

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
        command, environment = measured_start.command(list(args), {**self.env, **env})
        if output is None:
            process = subprocess.Popen(command, env=environment)
        else:
            with output.open("wb") as sink:
                process = subprocess.Popen(command, env=environment, stdout=sink, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def gateway(self, port: int | None = None, host: str = "127.0.0.1", **env: str) -> str:
        """A gateway's URL on loopback, once it is ready: on `port` (where one was, started again), else a
        free one; listening on `host` (`0.0.0.0`: every interface, as in a container)."""
        for _ in range(3 if port is None else 1):  # a port another test's server took first: another port
            port_now = free_port() if port is None else port
            process = self._spawn("gateway", "--host", host, "--port", str(port_now), env=env)
            url = f"http://127.0.0.1:{port_now}"
            try:
                wait_until_ready(f"{url}/readyz", process)
            except PortTaken:
                continue
            self.gateways[url] = process
            return url
        raise PortTaken("three ports in a row were taken by other processes")

    def worker(self, output: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
        # Each on a port of its own for its probes, as each container would have 9100 to itself: one the
        # kernel picks as the worker binds it (it logs which), never one picked here and taken meanwhile.
        return self._spawn("worker", "--host", "127.0.0.1", "--port", "0", env=env, output=output)

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
    with LocalCluster(tmp_path / "cluster", ready_within=scaled(30)) as cluster:
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
