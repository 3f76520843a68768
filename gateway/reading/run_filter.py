"""One run of a session, and with `subtree` its descendants (sub-agent runs, docs/api.md), followed on
the session's own stream: `GET /v1/sessions/{sid}/events?run=<id>&subtree=1`.

The feed reads the session's stream as for any client (the same catch-up, hub, gaps and ids); a
`RunFilter` is the encoding around the client's own that keeps only the followed runs' events. The
events keep the session's ids, so a client resumes with `Last-Event-ID` as on the whole stream: the
events of other runs after it are read again and left out again, none of the followed runs' is
skipped or sent twice.

The tree a client follows is the one the session's run records hold when the stream opens (a resume
from the middle never saw the `run.spawned` of the children started before), and every child
announced later by `run.spawned` with a followed parent (shared/vocabulary/run_tree.py's `Subtree`).
The stream ends once each followed run has ended and its end is sent, whether the session is idle
or not (the children of a cancelled run may end after it, once the session's run has ended): until
then a run is `pending` if its record is active, or if it ended after the client's position (its
end is still to come in the stream). A child can only be spawned by a run that has not ended, so
none comes once none is pending.

With no `run=`, none of this runs: the unfiltered stream is untouched (its live events are written
by the hub straight to the client). A filtered one is not: its encoding keeps state per client
(`live_frames` is None), as a renderer's does.
"""

import json
import time
from collections.abc import Callable

from tokentail.gateway.live.chunk import TERMINAL, Chunk, run_of
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.response import Encoding
from tokentail.shared.store.reads import Entry, StoredEvent
from tokentail.shared.vocabulary.events import EventType, Gap
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.shared.vocabulary.run_tree import Subtree

_SPAWNED = EventType.RUN_SPAWNED.encode()


class RunFilter:
    """An encoding (gateway/reading/response.py's `Encoding`) that passes on only the events of the
    followed runs to `inner`, the client's own, and says the stream is `finished` once they all ended."""

    live_frames: Callable[[list[Entry]], bytes] | None = None  # state per client: the hub writes nothing straight

    def __init__(
        self, inner: Encoding, runs: list[RunRecord], run_id: str, subtree: bool, after: int, heartbeat: float
    ) -> None:
        """`runs`: the session's run records, read before the stream opens (`run_id`'s among them);
        `after`: the client's position; `heartbeat`: how long the client may hear nothing (its
        session's other runs may keep the hub busy, so the hub's own pings do not come)."""
        by_id = {run.run_id: run for run in runs}
        self._inner = inner
        self.media_type = inner.media_type
        self._subtree = subtree
        self.followed = Subtree.of(runs, run_id) if subtree else Subtree(run_id)
        self.pending = {
            rid for rid in self.followed.runs if by_id[rid].active or (by_id[rid].finished_seq or 0) > after
        }
        self._heartbeat = heartbeat
        self._heard = time.monotonic()
        self._gap: Gap | None = None  # a gap in a batch with none of the followed runs' events

    @property
    def finished(self) -> bool:
        return not self.pending

    def head(self, gap: Gap | None) -> bytes:
        return self._inner.head(gap)

    def tail(self) -> bytes:
        return self._inner.tail()

    def batch(self, batch: Batch) -> bytes:
        if batch.snapshot is None and batch.chunks:
            kept = [chunk for chunk in map(self._kept, batch.chunks) if chunk is not None]
            gap, self._gap = self._gap or batch.gap, None
            if not kept:
                self._gap = gap  # told before the next event of the followed runs (an encoding's gap needs one)
                if time.monotonic() - self._heard < self._heartbeat:
                    return b""
                batch = Batch()  # a heartbeat: nothing of the followed runs for a while
            else:
                batch = Batch(kept, gap)
        self._heard = time.monotonic()
        return self._inner.batch(batch)

    def _kept(self, chunk: Chunk) -> Chunk | None:
        """The chunk's events of the followed runs (the chunk itself if they all are), learning the
        children spawned on the way and the ends of the runs followed."""
        events = chunk.events
        kept: list[StoredEvent] = []
        for event in events:
            run_id = run_of(event.data)
            if (
                event.type == _SPAWNED
                and self._subtree
                and self.followed.spawned(run_id, json.loads(event.data)["parent_run_id"])
            ):
                self.pending.add(run_id)
            if run_id in self.followed:
                kept.append(event)
                if event.type in TERMINAL:
                    self.pending.discard(run_id)
        if len(kept) == len(events):
            return chunk
        return Chunk(kept) if kept else None
