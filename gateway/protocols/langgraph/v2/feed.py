"""One v2 event stream of a thread (an SSE response, or one WebSocket subscription): where it starts,
and its envelopes as they come, for as long as its client stays (it goes on across runs, as the
protocol's streams do: a stream opened between runs waits for the next).

Where it starts. After a cursor (`Last-Event-ID`, `since`): the envelopes after it, read from the
start of the run the client was shown then (the reducer needs a run from its start to know what is
open), quiet up to the cursor. Without one: the thread's last run from its start (the SDK opens its
streams once `run.start` answered, and again at each reconnect, and drops by `event_id` what it has),
or, with no run yet, from now.

`values`: at the end of each of the thread's own runs (or its stop at questions) the thread's state
after it, `values_of(session_id)`, read as the envelope the renderer made for it goes out (the last
of its event's, with the event's durable id: a stream reopened after that id has had it).
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tokentail.gateway.protocols.langgraph.state import thread_values
from tokentail.gateway.protocols.langgraph.threads import read_thread
from tokentail.gateway.protocols.langgraph.v2.render import CHANNELS, Cursor, Filter, Part, V2Events
from tokentail.gateway.reading.feed import EventFeed, start_position
from tokentail.gateway.reading.streams import Streams
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.records import SessionRecord

ValuesOf = Callable[[str], Awaitable[dict[str, Any]]]


class StreamRequest(BaseModel):
    """`EventStreamRequest`: which channels, under which namespaces (prefixes), how deep below them;
    `since`: the session seq the client has (the envelopes' `seq`)."""

    model_config = ConfigDict(extra="allow")
    channels: list[str] = Field(min_length=1)
    namespaces: list[list[str]] | None = None
    depth: int | None = Field(None, ge=0)
    since: int | None = Field(None, ge=0)

    @field_validator("channels")
    @classmethod
    def _known(cls, channels: list[str]) -> list[str]:
        unknown = [c for c in channels if c not in CHANNELS and not (c.startswith("custom:") and len(c) > 7)]
        if unknown:
            raise ValueError(f"unknown channels {unknown}: the channels are {sorted(CHANNELS)} and custom:<name>")
        return channels

    def filter(self) -> Filter:
        namespaces = None if self.namespaces is None else tuple(tuple(ns) for ns in self.namespaces)
        return Filter(frozenset(self.channels), namespaces, self.depth)


def values_reader(store: SessionStore) -> ValuesOf:
    """How a stream reads the thread's values: as `GET /threads/{tid}/state` has them (state.py)."""

    async def values_of(session_id: str) -> dict[str, Any]:
        return thread_values(*await read_thread(store, session_id))

    return values_of


def start_of(session: SessionRecord, cursor: Cursor | None) -> tuple[int, Cursor]:
    """Where the feed reads from, and the cursor the client has (quiet up to it)."""
    if cursor is None:
        roots = [run for run in session.runs if run.parent_run_id is None and run.queued_seq is not None]
        start = roots[-1].queued_seq - 1 if roots and roots[-1].queued_seq is not None else session.last_event_id
        return start, Cursor(start)
    start = cursor.after
    while (going := session.run_shown_at(start)) is not None and going.queued_seq is not None:
        start = going.queued_seq - 1
    return start, cursor


class V2Feed:
    """A thread's envelopes for `filter` after `cursor`, batch by batch: an empty list at a heartbeat."""

    def __init__(
        self,
        streams: Streams,
        session: SessionRecord,
        filter: Filter,
        cursor: Cursor | None,
        values_of: ValuesOf | None,
        transport: str,
    ) -> None:
        self.streams = streams
        self.session_id = session.session_id
        self.start, cursor = start_of(session, cursor)
        self.renderer = V2Events(filter, cursor)
        self.values_of = values_of if "values" in filter.channels else None
        self.transport = transport
        self._feed: EventFeed | None = None
        self.read_through: Callable[[int], None] | None = None  # told each seq the feed is done with

    async def batches(self) -> AsyncIterator[list[Part]]:
        start = await start_position(self.streams.store, self.session_id, self.start)
        feed = self._feed = EventFeed(
            self.streams.hub, self.session_id, start, self.streams.settings.sse_batch, False, self.transport
        )
        opening = self.renderer.opening(start.gap)
        if opening:
            yield opening
        async with aclosing(feed.__aiter__()) as batches:
            async for batch in batches:
                if not batch.chunks:
                    yield []
                    continue
                parts: list[Part] = []
                for rendered, _ in self.renderer.rendered(batch):
                    parts += rendered
                parts += await self._values()
                if parts:
                    yield parts  # (resumed once they were sent)
                if self.read_through is not None:
                    self.read_through(batch.chunks[-1].last)

    def stop(self) -> None:
        if self._feed is not None:
            self._feed.stop()

    async def _values(self) -> list[Part]:
        """Fill the `values` envelopes the renderer made since (the last of an event's, so its durable
        id is theirs): the thread's values now, read once for them all. Nothing more to send."""
        due, self.renderer.values_due = self.renderer.values_due, []
        if due and self.values_of is not None:
            values = await self.values_of(self.session_id)
            for part in due:
                part["params"]["data"] = values
        return []
