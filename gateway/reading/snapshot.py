"""Compacted catch-up: what a client far behind is sent instead of every delta (`?catch_up=snapshot`).

A `snapshot` event carries the session's events after the client's position up to its own id, as
the client would keep them: each run of text (or reasoning) deltas as one `message.delta` with the
id of its last delta, and what a later `run.retrying` or `run.continued` drops left out (those
frames stay, so a client applies them as it always does: they then drop nothing more). Its size is
the session's text plus O(events other than deltas), and it is computed from the stream as it is
read: nothing is stored twice.

A running attempt can still be cut by a `run.continued` back to any of its events since its last
`run.started`, so its deltas must stay apart: each segment (a `run.started` up to the next one or
the run's end) is held until it closes, and the snapshot stops before a segment still open (or too
long to hold); the feed sends that part as it is. Runs that stream side by side (a run and its
sub-agent runs) share a segment: it closes once none of them can be cut any more. A long session
goes as several snapshots of about `READ_BUDGET_BYTES` each, so a gateway never holds a whole
session for one client.
"""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tokentail.gateway.live.chunk import run_of
from tokentail.gateway.reducer.reducer import parse, split_delta
from tokentail.shared.store.reads import SessionStore, StoredEvent
from tokentail.shared.vocabulary.events import TERMINAL_EVENTS, EventType
from tokentail.shared.vocabulary.run_log import drop_point, dropped_by

SNAPSHOT_BEHIND = 256  # a client this many events behind (or from the start) gets a snapshot, if it asked
HELD_BYTES = 1_048_576  # a segment larger than this is sent as it is: what one reader holds stays bounded

_MERGED = frozenset({EventType.MESSAGE_DELTA.encode(), EventType.REASONING_DELTA.encode()})
_STARTED = EventType.RUN_STARTED.encode()
_QUEUED = EventType.RUN_QUEUED.encode()
_RETRYING = EventType.RUN_RETRYING.encode()
_CONTINUED = EventType.RUN_CONTINUED.encode()
_FORK = b'"reason":"fork"'  # in a `run.started`'s data: a fork's, which may drop as `run.continued` does
_ENDS = frozenset(event.encode() for event in TERMINAL_EVENTS)


@dataclass(frozen=True)
class Snapshot:
    up_to: int  # its id: the client has the session up to here once it applied it
    data: bytes  # {"events": [{"id", "event", "data"}, ...]}


def _frame(seq: int, event_type: bytes, data: bytes) -> bytes:
    return b'{"id":%d,"event":"%s","data":%s}' % (seq, event_type, data)


class Compactor:
    """Events in, in order; compacted frames out, up to `through`."""

    def __init__(self, after: int) -> None:
        self.through = after  # the last id the frames made so far cover
        self.held_bytes = 0
        self._held: list[StoredEvent] = []  # the open segment
        # The runs with events held that a takeover may yet cut (since their last start): the segment
        # closes when none is left. Sub-agent runs stream side by side with their parent: one run's
        # start or end does not close another's.
        self._going: set[str] = set()
        self._delta_head = b""  # how the data of the last event starts, if it was a delta: `{"run_id":"<id>"`
        self._frames: list[bytes] = []
        self._frame_bytes = 0

    @property
    def ready_bytes(self) -> int:
        return self._frame_bytes

    def add(self, events: list[StoredEvent]) -> None:
        for event in events:
            data = event.data
            if self._delta_head and data.startswith(self._delta_head) and event.type in _MERGED:
                # The next delta of the run of the delta before (most events): going already.
                self._held.append(event)
                self.held_bytes += len(data)
                continue
            run_id = run_of(data)
            self._delta_head = b'{"run_id":"%s"' % run_id.encode() if event.type in _MERGED else b""
            if event.type == _STARTED and _FORK not in data:
                self._going.discard(run_id)  # its events before this start can no longer be cut
                if not self._going:
                    self._close()
            self._held.append(event)
            self.held_bytes += len(data)
            if event.type in _ENDS:
                self._going.discard(run_id)
                if not self._going:
                    self._close()
            elif event.type != _QUEUED:  # (a run waiting in line has nothing to cut yet)
                self._going.add(run_id)

    def take(self) -> Snapshot:
        """The frames made so far, as one snapshot."""
        snapshot = Snapshot(self.through, b'{"events":[' + b",".join(self._frames) + b"]}")
        self._frames, self._frame_bytes = [], 0
        return snapshot

    def _close(self) -> None:
        """The held segment can no longer be cut: make its frames."""
        held, self._held, self.held_bytes = self._held, [], 0
        if not held:
            return
        dropped = _dropped(held)
        deltas: _Deltas | None = None
        for event in held:
            if event.seq in dropped:
                continue
            if deltas is not None and deltas.takes(event):
                continue
            if deltas is not None:
                self._add_frame(deltas.frame())
                deltas = None
            if event.type in _MERGED:
                deltas = _Deltas(event)
            else:
                self._add_frame(_frame(event.seq, event.type, event.data))
        if deltas is not None:
            self._add_frame(deltas.frame())
        self.through = held[-1].seq

    def _add_frame(self, frame: bytes) -> None:
        self._frames.append(frame)
        self._frame_bytes += len(frame)


class _Deltas:
    """Consecutive deltas of one kind, run and agent: one frame, with the id of the last."""

    def __init__(self, first: StoredEvent) -> None:
        self.last = first
        self.head, text = split_delta(first.data)
        self.texts = [text]

    def takes(self, event: StoredEvent) -> bool:
        """Adds `event` if it is the next delta of the same kind, run and agent (right after the
        last: a dropped event between them may have been a cut's)."""
        if event.type != self.last.type or event.seq != self.last.seq + 1:
            return False
        head, text = split_delta(event.data)
        if head != self.head:
            return False
        self.last = event
        self.texts.append(text)
        return True

    def frame(self) -> bytes:
        if len(self.texts) == 1:
            return _frame(self.last.seq, self.last.type, self.last.data)
        return _frame(self.last.seq, self.last.type, self.head + b"".join(self.texts) + b'"}')


def _dropped(held: list[StoredEvent]) -> set[int]:
    """The ids of a segment's events that a later `run.retrying`, `run.continued` or fork's start of their run
    drops (shared/vocabulary/run_log.py's rule, the reducer's): clients would drop them anyway. Parses
    events only in the rare segment that has one."""
    dropped: set[int] = set()
    for index, event in enumerate(held):
        if event.type not in (_RETRYING, _CONTINUED) and not (event.type == _STARTED and _FORK in event.data):
            continue
        data = parse(event)
        after = drop_point(data) if data is not None else None
        if data is None or after is None:
            continue
        for earlier in held[:index]:
            if (
                dropped_by(after, earlier.seq, earlier.type.decode())
                and json.loads(earlier.data).get("run_id") == data.run_id
            ):
                dropped.add(earlier.seq)
    return dropped


async def read_snapshots(
    store: SessionStore, session_id: str, after: int, until: int, batch: int, budget: int
) -> AsyncIterator[Snapshot]:
    """The session's events after `after` up to `until`, compacted, as snapshots of about `budget`
    bytes. Ends early, before what it cannot compact (a segment still open or too long), and where
    the stream was trimmed under it (the feed then says so with a gap)."""
    compactor = Compactor(after)
    position, count = after, min(batch, 64)
    while position < until and compactor.held_bytes <= HELD_BYTES:
        events = await store.read(session_id, position, count)
        if not events or events[0].seq != position + 1:
            break
        events = [event for event in events if event.seq <= until]
        compactor.add(events)
        position = events[-1].seq
        count = min(batch, 2 * count)
        if compactor.ready_bytes >= budget:
            yield compactor.take()
    if compactor.through > after and compactor.ready_bytes:
        yield compactor.take()
