"""gateway/protocol.py's direct body write: the bytes uvicorn's own `send` writes for a body chunk,
and only where uvicorn's state lets `send` write one (a response started, chunked, not over, its
client there, its connection open and not paused)."""

import asyncio
import gc
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from tokentail.gateway.protocol import DIRECT_BODY, DirectBody

START: Any = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}


class Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def _cycle(method: str = "GET") -> tuple[RequestResponseCycle, Transport]:
    transport = Transport()
    scope: Any = {"type": "http", "method": method, "path": "/", "http_version": "1.1", "headers": []}
    cycle = RequestResponseCycle(
        scope=scope,
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    return cycle, transport


@pytest.mark.parametrize("body", [b"x", b"id: 7\nevent: message.delta\ndata: {}\n\n", "é".encode() * 5000])
async def test_a_direct_write_is_the_chunk_uvicorns_send_writes(body: bytes) -> None:
    sent, sent_transport = _cycle()
    await sent.send(START)
    head = bytes(sent_transport.written)
    await sent.send({"type": "http.response.body", "body": body, "more_body": True})
    direct, direct_transport = _cycle()
    await direct.send(START)
    assert DirectBody(direct).write(body)
    assert direct_transport.written == sent_transport.written
    assert sent_transport.written == head + b"%x\r\n" % len(body) + body + b"\r\n"


async def test_it_writes_nothing_where_uvicorns_state_says_no() -> None:
    cycle, transport = _cycle()
    direct = DirectBody(cycle)
    assert not direct.write(b"too early")  # the response has not started
    await cycle.send(START)
    cycle.flow.pause_writing()
    assert not direct.write(b"paused")  # above the transport's high-water mark: the client takes no more now
    cycle.flow.resume_writing()
    transport.closing = True
    assert not direct.write(b"closing")
    transport.closing = False
    cycle.disconnected = True
    assert not direct.write(b"client left")
    cycle.disconnected = False
    written = len(transport.written)
    assert direct.write(b"now")
    await cycle.send({"type": "http.response.body", "body": b"", "more_body": False})
    assert not direct.write(b"after the end")
    assert transport.written[written:] == b"3\r\nnow\r\n0\r\n\r\n"


async def test_a_response_with_a_length_is_never_written_to() -> None:
    cycle, transport = _cycle()
    with_length: Any = {**START, "headers": [(b"content-length", b"5")]}
    await cycle.send(with_length)
    assert not DirectBody(cycle).write(b"hello")  # not chunked: only `send` may write it
    head = bytes(transport.written)
    await cycle.send({"type": "http.response.body", "body": b"hello", "more_body": False})
    assert transport.written == head + b"hello"


async def test_a_request_s_objects_are_freed_with_it_not_kept_by_its_direct_write() -> None:
    cycle, _ = _cycle()
    scope: Any = cycle.scope
    direct = scope[DIRECT_BODY] = DirectBody(cycle)  # as GatewayHttpProtocol offers it
    await cycle.send(START)
    collected = gc.isenabled()
    gc.disable()  # freed by reference counting alone: no cycle of references through the scope
    try:
        del cycle
        assert not direct.write(b"to nobody")
        assert direct() is None
    finally:
        if collected:
            gc.enable()
