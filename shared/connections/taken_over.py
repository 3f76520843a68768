"""A redis-py connection, opened by redis-py, then read by a protocol of tokentail's own.

redis-py opens the connection: the address, TLS, AUTH, SELECT, keepalive, a Sentinel's primary, the
handshake's replies, all its own. From then on its stream reader is left aside: the connection's
transport is given a protocol (a `TakenOver`) whose `data_received` parses each network read with
hiredis, in C, and hands the replies on in that callback, with no task woken and nothing awaited per
reply. The joined round trips (shared/connections/round_trips.py) and the gateway's
stream hub (gateway/live/pubsub.py) read their connections so.
"""

import asyncio
from typing import cast

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import InvalidResponse


class TakenOver(asyncio.Protocol):
    """Base of a protocol that reads a connection redis-py opened (`take_over`). Its end is told to
    redis-py's own protocol too, so that redis-py's `disconnect`, which waits for it (a pool's, as
    its client closes), returns."""

    def __init__(self, connection: AbstractConnection) -> None:
        assert connection._writer is not None
        self.transport = cast(asyncio.Transport, connection._writer.transport)
        self._redis_py = self.transport.get_protocol()
        self.transport.set_protocol(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._redis_py.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself


def reader_of(connection: AbstractConnection) -> hiredis.Reader:
    """A parser of `connection`'s replies that gives an error reply as redis-py's exception of it
    (NoScriptError, OutOfMemoryError, ReadOnlyError, ...: its parser's `parse_error`), as a value."""
    parse_error = connection._parser.parse_error
    encoder = connection.encoder
    if encoder.decode_responses:
        return hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=parse_error,
            encoding=encoder.encoding,
            errors=encoder.encoding_errors,
        )
    return hiredis.Reader(protocolError=InvalidResponse, replyError=parse_error)
