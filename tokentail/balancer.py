"""A round-robin TCP balancer, for `tokentail dev --gateways N`: each new connection goes to the next
gateway that accepts it, as a load balancer in front of replicas does, with no stickiness. A
browser's reconnect may so land on another gateway, and resumes there: the multi-process stack of
docker-compose.yml (nginx in front of gateways), on one machine, with nothing to install.

    python -m tokentail.balancer 127.0.0.1:8000 127.0.0.1:8101 127.0.0.1:8102

A gateway decides who is on "this machine" (its console, with auth off) by its socket's peer, which is
the balancer here. So the balancer connects to a gateway from the address its client reached: loopback
for a client on this machine, else this machine's own address on the network (which no gateway takes
for loopback). A client that reached it on an IPv6 address other than loopback cannot be passed so to a
gateway on IPv4 and is refused (`--host` an IPv4 address, or one gateway, serves it).
"""

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import sys

Address = tuple[str, int]

logger = logging.getLogger(__name__)


def source_for(reached: str) -> Address | None:
    """Where to connect to a gateway from, for a client that reached the balancer at `reached`: None
    (the default, loopback) for loopback; the same address otherwise. ValueError: an IPv6 address
    other than loopback, which no connection to a gateway on IPv4 can come from."""
    address = ipaddress.ip_address(reached.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None
    if address.version != 4:
        raise ValueError(f"a client reached {reached}: the gateways listen on IPv4 loopback")
    return str(address), 0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one way until its end, then end it on the other side too. Any OSError is a side gone:
    ConnectionError's resets and broken pipes, and ENOTCONN (Errno 107), which the half-close raises
    when the other side has reset meanwhile (a browser that left mid-stream, its last chunks still
    on their way). The other way ends by itself then; this one has nothing to report."""
    with contextlib.suppress(OSError):
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # the other way may still be talking (the answer to the last request)


async def balance(listen: Address, gateways: list[Address]) -> None:
    turns = itertools.cycle(gateways)

    async def connect(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            try:
                source = source_for(client_writer.get_extra_info("sockname")[0])
            except ValueError as exc:
                logger.warning("refused: %s", exc)
                return
            for _ in gateways:  # the next one that accepts
                host, port = next(turns)
                with contextlib.suppress(OSError):
                    reader, writer = await asyncio.open_connection(host, port, local_addr=source)
                    break
            else:
                return
            try:
                await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))
            finally:
                writer.close()
        finally:
            client_writer.close()

    server = await asyncio.start_server(connect, *listen)
    async with server:
        await server.serve_forever()


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    listen, *upstream = sys.argv[1:]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(balance(_address(listen), [_address(address) for address in upstream]))
