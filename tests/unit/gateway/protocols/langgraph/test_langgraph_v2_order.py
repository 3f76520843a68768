"""A v2 WebSocket's subscriptions send in the thread's order (v2/socket.py's SendOrder): the SDK pauses its
other subscriptions just after a run's terminal lifecycle event, so a subscription that sent it before
another sent the message's last envelopes lost them to the client."""

import asyncio

import pytest

from tokentail.gateway.protocols.langgraph.v2.socket import SendOrder, _key

pytestmark = pytest.mark.langgraph


def envelope(event_id: str, seq: int) -> dict[str, object]:
    return {"type": "event", "event_id": event_id, "seq": seq}


def test_an_event_s_envelopes_are_placed_as_they_were_rendered() -> None:
    ids = ("103", "104.0", "104.1", "104.2", "104", "104.values")
    keys = [_key(envelope(f"1795-{e}", int(e.split(".")[0]))) or (0, 0) for e in ids]
    assert keys == sorted(keys) and (0, 0) not in keys
    assert _key(envelope("", 0)) is None  # a notice with no place goes when it comes


async def test_a_terminal_waits_for_the_other_subscription_s_events_before_it() -> None:
    order, sent = SendOrder(), []
    order.read_through("messages", 102)
    order.read_through("lifecycle", 102)

    async def lifecycle() -> None:  # its batch of 103..104 read first: only the terminal is its
        await order.turn("lifecycle", (104, 2))
        sent.append("104.2")
        order.read_through("lifecycle", 104)

    terminal = asyncio.create_task(lifecycle())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sent == [] and not terminal.done(), "the terminal went before the messages' 103 and 104.0"
    for k, key in (("103", (103, 1 << 20)), ("104.0", (104, 0)), ("104.1", (104, 1))):
        await order.turn("messages", key)
        sent.append(k)
    order.read_through("messages", 104)
    await asyncio.wait_for(terminal, 5)
    assert sent == ["103", "104.0", "104.1", "104.2"]


async def test_a_subscription_that_leaves_holds_nobody_back() -> None:
    order = SendOrder()
    order.read_through("gone", 10)
    order.read_through("staying", 10)
    waiting = asyncio.create_task(order.turn("staying", (12, 0)))
    await asyncio.sleep(0)
    assert not waiting.done()
    order.leave("gone")
    await asyncio.wait_for(waiting, 5)
