"""A round-robin TCP balancer, for `tokentail dev --gateways N`: each new connection goes to the next
gateway that accepts it, as a load balancer in front of replicas does, with no stickiness. A
browser's reconnect may so land on another gateway, and resumes there: the multi-process stack of
docker-compose.yml (nginx in front of gateways), on one machine, with nothing to install.

    python -m tokentail.balancer 127.0.0.1:8000 127.0.0.1:8101 127.0.0.1:8102
"""

import asyncio
import contextlib
import itertools
import sys

Address = tuple[str, int]


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
            for _ in gateways:  # the next one that accepts
                host, port = next(turns)
                with contextlib.suppress(OSError):
                    reader, writer = await asyncio.open_connection(host, port)
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
