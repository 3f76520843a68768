"""Redis URLs: one server's (`redis://`, `rediss://`, `unix://`), or a Sentinel setup's:

    redis+sentinel://[[username]:password@]host:port[,host:port...]/<service>[/<db>]

which names the primary that the Sentinels at those addresses watch as <service>. Clients ask the
Sentinels where the primary is, and ask again when a connection to it fails: after a failover they
reach the replica the Sentinels promoted. The credentials are the primary's (and its replicas');
the Sentinels themselves are reached without.
"""

from dataclasses import dataclass
from urllib.parse import unquote

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelSetup:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def sentinel_setup(url: str) -> SentinelSetup | None:
    """The Sentinel setup `url` names; None for one server's URL. ValueError, saying what is wrong,
    for a `redis+sentinel://` URL that names no Sentinel, no service, or a bad port or db."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme != SENTINEL_SCHEME:
        return None
    credentials, _, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    parts = [part for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise ValueError(f"a Sentinel URL names its service after the hosts: {SENTINEL_SCHEME}://host:port/mymaster")
    db = parts[1] if len(parts) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"the db of a Sentinel URL must be a number, not {db!r}")
    username, _, password = credentials.rpartition(":") if ":" in credentials else ("", "", credentials)
    return SentinelSetup(
        sentinels=tuple(_address(host) for host in hosts.split(",")),
        service=unquote(parts[0]),
        db=int(db),
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def _address(host: str) -> tuple[str, int]:
    name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not colon:
        name, port = host, str(SENTINEL_PORT)
    name = name.removeprefix("[").removesuffix("]")
    if not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a Sentinel URL lists host:port pairs separated by commas, not {host!r}")
    return name, int(port)
