"""Waiting for a run to settle: to end, or to stop at a question. The agent protocols' calls that
wait for their answer (an MCP tool call without a task, A2A's blocking `SendMessage`) and their
short wait before answering with a task follow the session's events through the hub, as any
stream does, so the end is seen at once, from any gateway, whichever worker ran it."""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.feed import Batch, EventFeed, start_position
from tokentail.shared.vocabulary.events import TERMINAL_EVENTS, EventType

SETTLED = frozenset(event.encode() for event in (*TERMINAL_EVENTS, EventType.INPUT_REQUIRED))


async def wait_until_settled(
    hub: StreamHub,
    session_id: str,
    run_id: str,
    after: int,
    seconds: float,
    transport: str,
    each: Callable[[Batch], Awaitable[None]] | None = None,
    batch: int = 256,
) -> bool:
    """Follow the session's events after `after` until run `run_id` ends or asks a question (True),
    or `seconds` pass, or the session's stream ends without it (False). `each`: given every batch
    read meanwhile (a call's progress told from them)."""
    needle = f'"run_id":"{run_id}"'.encode()
    start = await start_position(hub.store, session_id, after)
    feed = EventFeed(
        hub, session_id, start, batch, until_idle=True, transport=transport, writes_deltas=each is not None
    )
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds), contextlib.aclosing(feed.__aiter__()) as batches:
            async for got in batches:
                if each is not None:
                    await each(got)
                for event in got.events:
                    if event.type in SETTLED and needle in event.data and _of_run(event.data, run_id):
                        return True
    return False


def _of_run(data: bytes, run_id: str) -> bool:
    return bool(json.loads(data).get("run_id") == run_id)
