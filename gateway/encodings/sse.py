"""tokentail's own Server-Sent Events:

    retry: <ms>                    once, so EventSource reconnects quickly after a drop
    event: gap / data: {...}       when the asked position is not (or no longer) in the stream (no `id:`)
    id: <seq> / event: snapshot / data: {"events": [...]}   a compacted catch-up (`?catch_up=snapshot`)
    id: <seq> / event: <type> / data: <json>   catch-up by XRANGE, then live from the gateway's hub
    : ping                         after a heartbeat with nothing to send, so proxies keep the connection

The stored JSON is spliced in as it is, and each chunk is framed once for all its readers. A
catch-up read is framed from the stream's entries as Redis sent them (`frame_entries`): the same
bytes, with no object made of each event.
"""

from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.streams import SSE_PING
from tokentail.shared.store.reads import Entry, StoredEvent
from tokentail.shared.vocabulary.events import Gap


def encode_events(events: list[StoredEvent]) -> bytes:
    return b"".join(b"id: %d\nevent: %s\ndata: %s\n\n" % (e.seq, e.type, e.data) for e in events)


def frame_entries(entries: list[Entry]) -> bytes:
    """`encode_events` of the events these entries hold, from the entries: an event's id is the first
    part of its entry's id (`<seq>-0`, or `<seq>-1` for the first after a fence), written by Redis in
    decimal as `%d` writes it (a live chunk's entries, made of notifications, have the seq alone)."""
    if len(entries) == 1:  # a live append, mostly
        i, fields = entries[0]
        return b"id: %s\nevent: %s\ndata: %s\n\n" % (i.partition(b"-")[0], fields[1], fields[3])
    return b"".join(
        [b"id: %s\nevent: %s\ndata: %s\n\n" % (i.partition(b"-")[0], fields[1], fields[3]) for i, fields in entries]
    )


def encode_gap(gap: Gap) -> bytes:
    return b"event: gap\ndata: %s\n\n" % gap.model_dump_json().encode()


def encode_batch(batch: Batch) -> bytes:
    if batch.snapshot is not None:
        return b"id: %d\nevent: snapshot\ndata: %s\n\n" % (batch.snapshot.up_to, batch.snapshot.data)
    if not batch.chunks:
        return SSE_PING
    # Made once per chunk, for all its readers; a read's from its entries.
    frames = [chunk.encoded(encode_events, frame_entries) for chunk in batch.chunks]
    if batch.gap is not None:
        frames.insert(0, encode_gap(batch.gap))
    return frames[0] if len(frames) == 1 else b"".join(frames)


class NativeSse:
    media_type = "text/event-stream"
    finished = False

    def __init__(self, retry_ms: int) -> None:
        self._retry_ms = retry_ms

    def head(self, gap: Gap | None) -> bytes:
        return b"retry: %d\n\n" % self._retry_ms + (encode_gap(gap) if gap is not None else b"")

    batch = staticmethod(encode_batch)
    live_frames = staticmethod(frame_entries)  # the same for every client: the hub writes them

    def tail(self) -> bytes:
        return b""
