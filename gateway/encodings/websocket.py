"""The session's events on its WebSocket (routes/socket.py): one text message per event,
`{"id": 7, "event": "message.delta", "data": {...}}`, and gaps as `{"event": "gap", "data": {...}}`
with no id, and a compacted catch-up as `{"id": 9, "event": "snapshot", "data": {"events": [...]}}`.
Heartbeats are the socket's own pings, so an empty batch sends nothing."""

from tokentail.gateway.reading.feed import Batch
from tokentail.shared.events import Gap
from tokentail.shared.store import StoredEvent


def event_messages(events: list[StoredEvent]) -> list[str]:
    # The stored data is JSON already: splice it in rather than parse and re-serialise it.
    return [f'{{"id":{e.seq},"event":"{e.type.decode()}","data":{e.data.decode()}}}' for e in events]


def gap_message(gap: Gap) -> str:
    return f'{{"event":"gap","data":{gap.model_dump_json()}}}'


def batch_messages(batch: Batch) -> list[str]:
    if batch.snapshot is not None:
        return [f'{{"id":{batch.snapshot.up_to},"event":"snapshot","data":{batch.snapshot.data.decode()}}}']
    messages = [gap_message(batch.gap)] if batch.gap is not None else []
    for chunk in batch.chunks:
        messages += chunk.encoded(event_messages)  # made once per chunk, for all its readers
    return messages
