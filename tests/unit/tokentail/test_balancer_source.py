"""tokentail/balancer.py: where dev's balancer connects to a gateway from, for a client that reached it
at an address: so that the gateway's "this machine" (its console with auth off) stays the client's."""

import pytest

from tokentail.balancer import source_for


@pytest.mark.parametrize("reached", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_a_client_on_this_machine_comes_from_loopback(reached: str) -> None:
    assert source_for(reached) is None


@pytest.mark.parametrize(("reached", "source"), [("192.0.2.2", "192.0.2.2"), ("::ffff:192.0.2.2", "192.0.2.2")])
def test_a_client_elsewhere_comes_from_the_address_it_reached(reached: str, source: str) -> None:
    assert source_for(reached) == (source, 0)


def test_a_client_on_an_ipv6_network_address_is_refused() -> None:
    with pytest.raises(ValueError, match="IPv4 loopback"):
        source_for("fd00::2")
