"""NDJSON (`Accept: application/x-ndjson`), for scripts and servers that do not speak SSE: one
`{"id", "event", "data"}` object per line (gap lines have no id), an empty line as the heartbeat; a
compacted catch-up is one `{"id", "event": "snapshot", "data": {"events": [...]}}` line."""

from tokentail.gateway.reading.feed import Batch
from tokentail.shared.store.reads import Entry, StoredEvent
from tokentail.shared.vocabulary.events import Gap


def ndjson_events(events: list[StoredEvent]) -> bytes:
    # The stored data is JSON already: splice it in rather than parse and re-serialise it.
    return b"".join(b'{"id":%d,"event":"%s","data":%s}\n' % (e.seq, e.type, e.data) for e in events)


def ndjson_entries(entries: list[Entry]) -> bytes:
    """`ndjson_events` of the events these entries hold, from the entries (as sse.frame_entries)."""
    if len(entries) == 1:  # a live append, mostly
        i, fields = entries[0]
        return b'{"id":%s,"event":"%s","data":%s}\n' % (i.partition(b"-")[0], fields[1], fields[3])
    return b"".join(
        [b'{"id":%s,"event":"%s","data":%s}\n' % (i.partition(b"-")[0], fields[1], fields[3]) for i, fields in entries]
    )


def ndjson_gap(gap: Gap) -> bytes:
    return b'{"event":"gap","data":%s}\n' % gap.model_dump_json().encode()


class Ndjson:
    media_type = "application/x-ndjson"
    finished = False
    live_frames = staticmethod(ndjson_entries)  # the same for every client: the hub writes them

    def head(self, gap: Gap | None) -> bytes:
        return ndjson_gap(gap) if gap is not None else b""

    def batch(self, batch: Batch) -> bytes:
        if batch.snapshot is not None:
            return b'{"id":%d,"event":"snapshot","data":%s}\n' % (batch.snapshot.up_to, batch.snapshot.data)
        if not batch.chunks:
            return b"\n"
        lines = b"".join(chunk.encoded(ndjson_events, ndjson_entries) for chunk in batch.chunks)
        return lines if batch.gap is None else ndjson_gap(batch.gap) + lines

    def tail(self) -> bytes:
        return b""
