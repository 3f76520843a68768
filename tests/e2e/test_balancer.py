"""The balancer of `tokentail dev --gateways N` (tokentail/balancer.py), as dev runs it: its own
process, here in front of a gateway the test plays, so the test holds each side at the instant it
means."""

import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import eventually_sync
from tokentail.redis_server import free_port

LISTEN = "0A"


def _socket(local_port: int, remote_port: int = 0) -> str | None:
    """The state of the loopback socket from `local_port` to `remote_port` (0: a listening one), from
    /proc/net/tcp; None if there is none. A socket reset by its peer is gone from there at once."""
    remote = f"0100007F:{remote_port:04X}" if remote_port else "00000000:0000"
    for row in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]):
        if row[1] == f"0100007F:{local_port:04X}" and row[2] == remote:
            return row[3]
    return None


def _sockets(pid: int) -> int:
    """How many sockets the process has open."""
    count = 0
    for link in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed since it was listed
            count += link.readlink().name.startswith("socket:")
    return count


@pytest.fixture
def gateway() -> Iterator[socket.socket]:
    """A listening socket playing the gateway: the test accepts and answers by hand."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        yield listening


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_a_client_gone_mid_response_ends_its_connection_without_a_traceback(gateway: socket.socket) -> None:
    # A browser tab closed mid-stream: the client's FIN reaches the gateway, whose last chunk, already
    # on its way, meets a closed socket (the client's kernel answers it with a reset). Then the gateway
    # closes: the balancer's half-close toward the reset client failed with ENOTCONN (Errno 107),
    # which asyncio printed as "Unhandled exception in client_connected_cb" and a traceback.
    port = free_port()
    balancer = subprocess.Popen(
        [sys.executable, "-m", "tokentail.balancer", f"127.0.0.1:{port}", f"127.0.0.1:{gateway.getsockname()[1]}"],
        stderr=subprocess.PIPE,
    )
    try:
        eventually_sync(lambda: _socket(port) == LISTEN, what="the balancer listens")
        idle = _sockets(balancer.pid)
        client = socket.create_connection(("127.0.0.1", port))
        upstream, _ = gateway.accept()
        with client, upstream:
            upstream.sendall(b"HTTP/1.1 200 OK\r\n\r\nevent: message.delta\n\n")
            received = b""
            while not received.endswith(b"message.delta\n\n"):  # all of it: nothing is left unread
                received += client.recv(100)
            client_port = client.getsockname()[1]
            client.close()
            assert upstream.recv(100) == b""  # the client's end, passed on
            upstream.sendall(b"event: message.delta\n\n")  # in flight: the client's kernel resets it
            eventually_sync(lambda: _socket(port, client_port) is None, what="the client's reset, at the balancer")
        # The gateway closes: the balancer ends the connection, both ways.
        eventually_sync(lambda: _sockets(balancer.pid) == idle, what="the connection's sockets closed")
    finally:
        balancer.send_signal(signal.SIGINT)  # asyncio.run's Ctrl-C: what the loop had to say is said by then
        _, said = balancer.communicate(timeout=30)
    assert balancer.returncode == 0, said.decode()
    assert said.decode() == ""
