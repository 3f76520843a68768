"""Who is on the other end: the socket's own peer, and the client a named proxy says it forwards.

uvicorn runs without its proxy headers (gateway/server.py): the app reads them itself (gateway/app.py),
first thing for every request and socket, after keeping the socket's peer in the scope (`PEER`), so
what a client may write in a header never hides where its connection came from. Only the proxies of
`TOKENTAIL_TRUSTED_PROXIES` are believed: from them, uvicorn's own `ProxyHeadersMiddleware` sets the
scope's `client` (the chain's rightmost entry that is not a named proxy) and `scheme`; from anyone
else, the headers are ignored.

"This machine" (the console with auth off, gateway/admin/access.py) is a loopback peer that forwards
nobody, or a named proxy on this machine forwarding a client on it. A loopback peer that is no named
proxy yet sends forwarding headers is a proxy nobody named (an nginx on this host): its clients may be
anywhere, so none of them is this machine.
"""

import ipaddress
from typing import Any

from starlette.types import Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

# The scope key of the socket's own peer, `(host, port)` or None, before any forwarding header is read.
PEER = "tokentail.peer"
FORWARDING_HEADERS = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


class ClientAddresses:
    """Keeps a request's peer, then believes the forwarding headers of the named proxies only."""

    def __init__(self, trusted_proxies: list[str]) -> None:
        self._trusted = [ipaddress.ip_network(proxy) for proxy in trusted_proxies]
        # uvicorn's own reading of the headers, made to rewrite the scope and call nothing after.
        self._headers = ProxyHeadersMiddleware(_done, trusted_proxies) if trusted_proxies else None

    async def resolve(self, scope: Scope) -> None:
        """Keep the scope's peer under `PEER`; from a named proxy, take the client and scheme it forwards."""
        scope[PEER] = scope.get("client")
        if self._headers is not None:  # (with none named: uvicorn's middleware would trust 127.0.0.1)
            await self._headers(scope, _done, _done)  # type: ignore[arg-type]

    def is_this_machine(self, scope: Scope) -> bool:
        peer = scope.get(PEER, scope.get("client"))
        if not _loopback(peer[0] if peer else None):
            return False
        names = {name for name, _ in scope.get("headers", ())}
        if names.isdisjoint(FORWARDING_HEADERS):
            return True
        # Only X-Forwarded-For is read (as uvicorn reads it): a proxy that names its client otherwise
        # (`Forwarded` alone) is not taken to say the client is here.
        client = scope.get("client")
        return (
            b"x-forwarded-for" in names
            and self._is_trusted(peer[0] if peer else None)
            and _loopback(client[0] if client else None)
        )

    def _is_trusted(self, host: str | None) -> bool:
        address = _address(host)
        return address is not None and any(address in network for network in self._trusted)


def _address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host) if host is not None else None
    except ValueError:
        return None


def _loopback(host: str | None) -> bool:
    address = _address(host)
    return address is not None and address.is_loopback


async def _done(*_: Any) -> None:
    return None
