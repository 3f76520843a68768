"""What is told of one client's feed besides its events, at the few points where the feed
(gateway/reading/feed.py) calls it: the metrics (connections, resumes, events sent and replayed,
snapshots, gaps), the connection's span with traces on (connection_span.py), and the first delta of
each run it writes (first_delta.py). The feed keeps to where a client starts, catch-up and live.
"""

import operator
from collections.abc import Sequence

from tokentail.gateway import metrics
from tokentail.gateway.reading.connection_span import ConnectionSpan
from tokentail.gateway.reading.first_delta import DELTA, FirstDeltas, head_of, run_id_of
from tokentail.gateway.reading.hub import Chunk
from tokentail.gateway.reading.snapshot import Snapshot
from tokentail.shared import tracing
from tokentail.shared.events import Gap
from tokentail.shared.store import SessionStore, StoredEvent

_TYPE, _DATA = operator.itemgetter(1), operator.itemgetter(2)  # of a StoredEvent
Columns = tuple[Sequence[bytes], Sequence[bytes]]  # a chunk's events' types, and their data


class FeedObserver:
    def __init__(
        self,
        store: SessionStore,
        session_id: str,
        transport: str,
        replay_until: int,
        first_deltas: FirstDeltas | None,
    ) -> None:
        """`replay_until`: a resuming client's stream's last id when it came back (else 0);
        `first_deltas`: None for a feed whose reader shows a client nothing as it goes."""
        self._store = store
        self._session_id = session_id
        self._transport = transport
        self._replay_until = replay_until
        self._first_deltas = first_deltas
        self._sent = metrics.EVENTS_SENT.labels(transport)
        self._open = metrics.CONNECTIONS.labels(transport)
        self._delta_head = b"\0"  # how the data of the run's deltas starts, once one was counted
        self._span: ConnectionSpan | None = None

    def opened(self, after: int, gap: Gap | None) -> None:
        metrics.CONNECTIONS_OPENED.labels(self._transport).inc()
        if self._replay_until:
            metrics.RESUMES.labels(self._transport).inc()
        self._open.inc()
        if tracing.ON:
            resumed = self._replay_until > 0
            self._span = ConnectionSpan(self._store, self._session_id, self._transport, after, resumed, gap)

    def closed(self, how: str) -> None:
        self._open.dec()
        if self._span is not None:
            self._span.end(how)

    def snapshot(self, snapshot: Snapshot) -> None:
        metrics.SNAPSHOTS.labels(self._transport).inc()
        if self._span is not None:
            self._span.snapshot(snapshot)

    def gap(self, gap: Gap) -> None:
        """A gap found while reading (one found at the start is counted where it is: feed.start_position)."""
        metrics.GAPS.labels(gap.reason).inc()
        if self._span is not None:
            self._span.gap(gap)

    def sent(self, chunks: list[Chunk], columns: list[Columns] | None = None) -> None:
        """Count what goes to the client, and tell of the runs whose first delta it carries. `columns`:
        each chunk's types and data, where the caller has them (else taken of its events)."""
        self._sent.inc(sum(chunk.count for chunk in chunks))
        if chunks[0].first <= self._replay_until:
            replayed = sum(chunk.up_to(self._replay_until) for chunk in chunks)
            metrics.RESUMED_EVENTS.labels(self._transport).inc(replayed)
        if self._first_deltas is not None:
            for types, datas in columns if columns is not None else map(_columns, chunks):
                self._find_first_delta(types, datas)
        if self._span is not None:
            self._span.carried(chunks)

    def _find_first_delta(self, types: Sequence[bytes], datas: Sequence[bytes]) -> None:
        """Tell of the run of a delta among events of these `types` and `datas` this feed has not told
        of yet. A session's runs go one after another, so once the last delta here is of the run told
        of last, all of them are: a run's later deltas cost a look at the types (in C) and one comparison."""
        if len(types) == 1:  # a live append, mostly
            if types[0] != DELTA:
                return
            last = 0
        elif DELTA not in types:
            return
        else:
            last = len(types) - 1 - types[::-1].index(DELTA)
        if datas[last].startswith(self._delta_head):
            return
        for type_, data in zip(types, datas, strict=True):  # a new run's first delta: once per run
            if type_ == DELTA and not data.startswith(self._delta_head):
                run_id = run_id_of(data)
                if run_id is not None and self._first_deltas is not None:
                    self._delta_head = head_of(run_id)
                    self._first_deltas.written(self._session_id, run_id)


def _columns(chunk: Chunk) -> Columns:
    """The types and the data of a chunk's events."""
    events: list[StoredEvent] = chunk.events
    if len(events) == 1:  # a live append, mostly
        return (events[0].type,), (events[0].data,)
    return list(map(_TYPE, events)), list(map(_DATA, events))
