"""What is told of one client's feed besides its events, at the few points where the feed
(gateway/reading/feed.py) calls it: the metrics (connections, resumes, events sent and replayed,
snapshots, gaps), the connection's span with traces on (connection_span.py), and the first delta of
each run it writes (first_delta.py). The feed keeps to where a client starts, catch-up and live.
"""

from prometheus_client import Counter

from tokentail.gateway import metrics
from tokentail.gateway.live.chunk import Chunk, Columns
from tokentail.gateway.live.first_delta import FirstDeltas, tell_first_deltas
from tokentail.gateway.reading.connection_span import ConnectionSpan
from tokentail.gateway.reading.snapshot import Snapshot
from tokentail.shared.plumbing import tracing
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.events import Gap


class FeedObserver:
    __slots__ = (
        "_store",
        "_session_id",
        "_transport",
        "_replay_until",
        "_first_deltas",
        "_sent",
        "_open",
        "_delta_head",
        "_span",
    )  # fmt: skip  (slots: one of each open stream, kept as small as can be)

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
        self._delta_head = b"\0"  # how the data of the last run told of starts (first_delta.py)
        self._span: ConnectionSpan | None = None

    @property
    def sent_counter(self) -> Counter:
        """The count of events sent on its transport (which the hub adds to for what it writes)."""
        return self._sent

    @property
    def marks_deltas(self) -> bool:
        """Whether it tells of each run's first delta written (the hub does, for what it writes)."""
        return self._first_deltas is not None

    @property
    def traced(self) -> bool:
        """Whether its connection has a span (traces on), which each chunk sent goes in."""
        return tracing.ON

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
        if (first_deltas := self._first_deltas) is not None:
            for types, datas in columns if columns is not None else (chunk.columns() for chunk in chunks):
                self._delta_head = tell_first_deltas(first_deltas, self._session_id, self._delta_head, types, datas)
        if self._span is not None:
            self._span.carried(chunks)
