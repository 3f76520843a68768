"""A chunk: consecutive events of one session, as one read or notification brought them, shared by
every follower that takes them (gateway/live/hub.py), each encoding made once."""

import bisect
import json
import operator
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tokentail.shared.store.reads import (
    ENTRY_FIELDS,
    FIELD_DATA,
    FIELD_TYPE,
    Entry,
    StoredEvent,
    entry_seq,
    parse_raw_entries,
)
from tokentail.shared.vocabulary.events import TERMINAL_EVENTS

T = TypeVar("T")
TERMINAL = frozenset(event.encode() for event in TERMINAL_EVENTS)
_SEQ = operator.itemgetter(0)  # a StoredEvent's seq
Columns = tuple[Sequence[bytes], Sequence[bytes]]  # a chunk's events' types, and their data
_RUN_ID_HEAD = b'{"run_id":"'  # how every stored event starts (EventData's first field), as workers write it


class Chunk:
    """Consecutive events of one session, as one read or notification brought them. Shared by all the
    followers of the session: each encoding is made once, by the first follower that needs it.

    A catch-up read's chunk (`of_entries`) holds the stream's entries as Redis sent them, and a live
    one (`made` by the hub) its notifications made entries of the same shape (`[b"<seq>", [b"type",
    type, b"data", data, b"ts", ts]]`): an encoding that frames them as they are (`encoded`'s
    `from_entries`: tokentail's own SSE and NDJSON) makes no object of each event, and `events` are
    made of them only for a reader that asks."""

    __slots__ = ("_events", "entries", "first", "last", "count", "size", "terminal", "_key", "_value", "_encoded")

    def __init__(self, events: list[StoredEvent]) -> None:
        self._events: list[StoredEvent] | None = events
        self.entries: list[Entry] | None = None
        self.first = events[0].seq
        self.last = events[-1].seq
        self.count = len(events)
        self.size = sum(len(event.data) for event in events)
        self.terminal = any(event.type in TERMINAL for event in events)  # one of them ends a run
        # Its first encoding (`_key` made `_value`), and any other (by what made it).
        self._key: Callable[..., Any] | None = None
        self._value: Any = None
        self._encoded: dict[Callable[..., Any], Any] | None = None

    @classmethod
    def of_entries(cls, entries: list[Entry], size: int, terminal: bool) -> "Chunk":
        """The events of stream entries as XRANGE sent them (`Entry`), `size` their data's bytes,
        `terminal` whether one of them ends a run."""
        return cls.made(entries, entry_seq(entries[0]), entry_seq(entries[-1]), size, terminal)

    @classmethod
    def made(cls, entries: list[Entry], first: int, last: int, size: int, terminal: bool) -> "Chunk":
        """Of entries whose first and last ids are known (`first`, `last`)."""
        chunk = cls.__new__(cls)
        chunk._events = chunk._key = chunk._value = chunk._encoded = None
        chunk.entries, chunk.first, chunk.last, chunk.count, chunk.size = entries, first, last, len(entries), size
        chunk.terminal = terminal
        return chunk

    @property
    def events(self) -> list[StoredEvent]:
        if (events := self._events) is None:
            assert self.entries is not None
            events = self._events = parse_raw_entries(self.entries)
        return events

    def columns(self) -> Columns:
        """Its events' types and their data, taken in C where it holds entries."""
        if self.entries is not None:
            return columns_of(self.entries)
        events = self.events
        if len(events) == 1:
            return (events[0].type,), (events[0].data,)
        return [event.type for event in events], [event.data for event in events]

    def encoded(
        self, encode: Callable[[list[StoredEvent]], T], from_entries: Callable[[list[Entry]], T] | None = None
    ) -> T:
        """`encode(self.events)`, made once; or `from_entries`, which makes the same of the entries the
        chunk holds, if it holds them."""
        if self._key is encode:
            return self._value  # type: ignore[no-any-return]
        if self._encoded is not None and (done := self._encoded.get(encode)) is not None:
            return done  # type: ignore[no-any-return]
        if from_entries is not None and self.entries is not None:
            value = from_entries(self.entries)
        else:
            value = encode(self.events)
        if self._key is None:  # (most chunks are framed once, for one encoding: no dict)
            self._key, self._value = encode, value
        else:
            if self._encoded is None:
                self._encoded = {}
            self._encoded[encode] = value
        return value

    def up_to(self, seq: int) -> int:
        """How many of its events have ids up to `seq`."""
        if self.last <= seq:
            return self.count
        if self.entries is not None:
            return bisect.bisect_right(self.entries, seq, key=entry_seq)
        return bisect.bisect_right(self.events, seq, key=_SEQ)

    def after(self, seq: int) -> "Chunk":
        return Chunk([event for event in self.events if event.seq > seq])


def columns_of(entries: list[Entry]) -> Columns:
    """The types and the data of the events of these entries."""
    if len(entries) == 1:  # a live append, mostly
        fields = entries[0][1]
        return (fields[1],), (fields[3],)
    fields_of = list(map(ENTRY_FIELDS, entries))
    return list(map(FIELD_TYPE, fields_of)), list(map(FIELD_DATA, fields_of))


def run_of(data: bytes) -> str:
    """The `run_id` of an event's stored JSON: read from its head where it is first, as workers
    write every event; else parsed."""
    if data.startswith(_RUN_ID_HEAD):
        end = data.find(b'"', len(_RUN_ID_HEAD))
        if end > 0:
            return data[len(_RUN_ID_HEAD) : end].decode()
    return str(json.loads(data).get("run_id"))
