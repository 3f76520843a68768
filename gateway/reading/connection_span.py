"""The span of one client's connection to a session's stream (`stream {transport}`), made by its
`EventFeed`, through which every transport reads: a child of the request's server span, linked to
the run span of each run whose events it carried, so a trace viewer goes from a run to every client
that read it, and from a client to the runs it was shown (docs/observability.md).

Made only with traces on: a feed checks `tracing.ON` once, as it opens. The runs' links come from
their records' trace contexts, read in one round trip once the stream ended, off its path.
"""

import asyncio
import logging
import time
from collections.abc import Iterable

from opentelemetry.trace import Span

from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.live.first_delta import head_of, run_id_of
from tokentail.gateway.reading.snapshot import Snapshot
from tokentail.shared.plumbing import tracing
from tokentail.shared.plumbing.run_spans import RunTrace
from tokentail.shared.store.reads import SessionStore, read_runs_of
from tokentail.shared.vocabulary.events import Gap

logger = logging.getLogger(__name__)

_ENDING: set[asyncio.Task[None]] = set()  # spans whose links are being read: kept until they end


class ConnectionSpan:
    """One feed's span: what it sent (events, bytes, snapshots, gaps, runs) and how it ended."""

    def __init__(
        self, store: SessionStore, session_id: str, transport: str, after: int, resumed: bool, gap: Gap | None
    ) -> None:
        self._store = store
        self._session_id = session_id
        attributes: dict[str, str | int | bool] = {
            "tokentail.transport": transport,
            "gen_ai.conversation.id": session_id,
            "tokentail.stream.after": after,  # the last id the client had (or was moved to by a gap)
            "tokentail.stream.resumed": resumed,  # came back after an id (Last-Event-ID, after, a resume)
        }
        self.span: Span = tracing.tracer().start_span(f"stream {transport}", attributes=attributes)
        self.runs: dict[str, None] = {}  # the runs whose events it carried, in order
        self.events = 0
        self.bytes = 0
        self.snapshots = 0
        self._run_head = b"\0"  # how the data of the last run's events starts (none yet)
        if gap is not None:
            self.gap(gap)

    def carried(self, chunks: Iterable[Chunk]) -> None:
        for chunk in chunks:
            self.events += len(chunk.events)
            self.bytes += chunk.size
            for event in chunk.events:
                if not event.data.startswith(self._run_head) and (run_id := run_id_of(event.data)) is not None:
                    self._run_head = head_of(run_id)
                    self.runs[run_id] = None

    def snapshot(self, snapshot: Snapshot) -> None:
        """A compacted catch-up event: its bytes count; the runs it folded are not read out of it."""
        self.snapshots += 1
        self.bytes += len(snapshot.data)

    def gap(self, gap: Gap) -> None:
        self.span.set_attribute("tokentail.stream.gap", gap.reason)  # the last one, if several
        self.span.add_event(
            "gap", {"tokentail.gap.reason": gap.reason, "tokentail.gap.first_available": gap.first_available}
        )

    def end(self, how: str) -> None:
        """The stream ended `how`: its counts now, its links to the runs once read (a task of its own,
        which no cancellation of the stream's own cuts short)."""
        self.span.set_attributes(
            {
                "tokentail.stream.events": self.events,
                "tokentail.stream.bytes": self.bytes,
                "tokentail.stream.snapshots": self.snapshots,
                "tokentail.stream.end": how,
            }
        )
        ended = time.time_ns()
        if not self.runs or not self.span.is_recording():
            self.span.end(ended)
            return
        task = asyncio.create_task(self._link_and_end(ended))
        _ENDING.add(task)
        task.add_done_callback(_ENDING.discard)

    async def _link_and_end(self, ended: int) -> None:
        runs = list(self.runs)
        try:
            keys = self._store.keys.session(self._session_id)
            records = await read_runs_of(self._store.redis, keys, runs)
            for run_id, record in zip(runs, records, strict=True):
                if record is not None:
                    self.span.add_link(RunTrace.of(record).run_span, {"tokentail.run.id": run_id})
        except Exception:  # the span goes out without its links rather than not at all
            logger.warning("the links of a stream's span to its runs were not read", exc_info=True)
        finally:
            self.span.end(ended)
