"""A local Sentinel setup for the tests: a primary redis-server, a replica of it, and three Sentinels
(Debian's `redis-sentinel`; else `redis-server --sentinel`) watching it as `mymaster` with a quorum of
two, quick to fail over: a primary silent for a second is replaced by its replica."""

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from tokentail.redis_server import RedisServer, find_redis_server, free_port

SERVICE = "mymaster"


class LocalSentinels:
    def __init__(self, data_dir: Path, down_after_ms: int = 1000) -> None:
        (data_dir / "primary").mkdir(parents=True, exist_ok=True)
        (data_dir / "replica").mkdir(parents=True, exist_ok=True)
        # Redis waits 5 s by default before a replica's first (diskless) sync: a failover before it would
        # promote an empty replica.
        self.primary = RedisServer(data_dir / "primary", extra_args=("--repl-diskless-sync-delay", "0"))
        self.replica = RedisServer(
            data_dir / "replica", extra_args=("--replicaof", "127.0.0.1", str(self.primary.port))
        )
        self.data_dir = data_dir
        self.down_after_ms = down_after_ms
        self.ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The setup as tokentail names it (shared/plumbing/redis_urls.py)."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in self.ports) + f"/{SERVICE}"

    def start(self) -> "LocalSentinels":
        self.primary.start()
        self.replica.start()
        for index, port in enumerate(self.ports):
            config = self.data_dir / f"sentinel{index}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.data_dir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            binary = shutil.which("redis-sentinel")
            command = [binary, str(config)] if binary else [find_redis_server(), str(config), "--sentinel"]
            self.sentinels.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.wait_for(lambda: self.primary_port() == self.primary.port and self.replicas_known() >= 1)
        self.wait_for(self._replica_in_sync)
        return self

    def primary_port(self) -> int | None:
        """The port of the primary, as the first Sentinel that answers says."""
        for port in self.ports:
            reply = _ask(port, f"SENTINEL get-master-addr-by-name {SERVICE}")
            if reply and len(reply) == 2:
                return int(str(reply[1]))
        return None

    def replicas_known(self) -> int:
        reply = _ask(self.ports[0], f"SENTINEL replicas {SERVICE}")
        return len(reply or [])

    def _replica_in_sync(self) -> bool:
        client = redis.Redis(port=self.replica.port, socket_timeout=1, decode_responses=True)
        try:
            info: dict[str, object] = client.info("replication")  # type: ignore[assignment]
            return info.get("master_link_status") == "up"
        finally:
            client.close()

    def kill_primary(self) -> int:
        """SIGKILL the current primary, as a crash would; its port."""
        port = self.primary_port()
        for server in (self.primary, self.replica):
            if server.port == port:
                server.kill()
        assert port is not None
        return port

    @staticmethod
    def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the Sentinel setup did not get there in time")
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self.sentinels:
            process.kill()
            process.wait()
        self.replica.stop()
        self.primary.stop()

    def __enter__(self) -> "LocalSentinels":
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def _ask(port: int, command: str) -> list[object] | None:
    """One command to a Sentinel: its reply, or None if it does not answer."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True)
    try:
        reply: list[object] = client.execute_command(*command.split())  # type: ignore[no-untyped-call]
        return reply
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
