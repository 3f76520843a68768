"""Who is "this machine" to the console with auth off (issue 84), with real processes: a gateway on
every interface as compose runs it, reached from this machine's own address on the network (to the
gateway, a peer that is not loopback: a client elsewhere), and dev's balancer in front of one."""

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx2
import pytest

from tests.e2e.conftest import Stack
from tests.support.waiting import eventually_sync
from tokentail.redis_server import free_port

FORGED = [{}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Real-IP": "127.0.0.1"}, {"Forwarded": "for=127.0.0.1"}]


@pytest.fixture
def network_address() -> str:
    """This machine's IPv4 address on its network (the one its default route leaves from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))  # a UDP "connection" sends nothing: it only picks the route
        except OSError:
            pytest.skip("this machine has no IPv4 network address")
        address: str = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this machine has no IPv4 network address")
    return address


def _who(url: str, headers: dict[str, str] | None = None) -> tuple[int, str | None]:
    response = httpx2.get(f"{url}/v1/admin/whoami", headers=headers or {}, timeout=30)
    return response.status_code, response.json().get("who")


def test_a_client_elsewhere_is_not_this_machine_whatever_it_writes(stack: Stack, network_address: str) -> None:
    # FORWARDED_ALLOW_IPS=* is what docker-compose.yml set before: uvicorn then took the header's leftmost
    # entry for the client, so a client anywhere writing 127.0.0.1 was the console's operator.
    url = stack.gateway(host="0.0.0.0", FORWARDED_ALLOW_IPS="*")
    elsewhere = url.replace("127.0.0.1", network_address)
    assert _who(url) == (200, "local")
    for headers in FORGED:
        assert _who(elsewhere, headers)[0] == 403, headers
        runs = httpx2.get(f"{elsewhere}/v1/admin/runs", headers=headers, timeout=30)
        assert runs.status_code == 403, headers


@contextlib.contextmanager
def _balancer(gateway: str) -> Iterator[int]:
    """dev's balancer on every interface, in front of `gateway`; its port."""
    port = free_port()
    upstream = gateway.removeprefix("http://")
    balancer = subprocess.Popen([sys.executable, "-m", "tokentail.balancer", f"0.0.0.0:{port}", upstream])
    try:
        eventually_sync(lambda: _connects(port), what="the balancer listens")
        yield port
    finally:
        balancer.terminate()
        balancer.wait(timeout=10)


def _connects(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        return True
    return False


def test_through_dev_s_balancer_only_a_client_on_loopback_is_this_machine(stack: Stack, network_address: str) -> None:
    with _balancer(stack.gateway()) as port:
        assert _who(f"http://127.0.0.1:{port}") == (200, "local")  # a browser on the dev machine
        assert _who(f"http://{network_address}:{port}")[0] == 403  # one elsewhere, through the same balancer
