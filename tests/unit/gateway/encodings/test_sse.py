import pytest

from tokentail.gateway.encodings.ndjson import Ndjson, ndjson_entries, ndjson_events
from tokentail.gateway.encodings.sse import encode_batch, encode_events, encode_gap, frame_entries
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.reading.feed import Batch, parse_last_event_id
from tokentail.shared.store.reads import StoredEvent, entry_of, parse_raw_entries
from tokentail.shared.vocabulary.errors import InvalidLastEventId
from tokentail.shared.vocabulary.events import Gap


def test_events_are_framed_with_id_event_and_data() -> None:
    frames = encode_events(
        [
            StoredEvent(7, b"message.delta", b'{"run_id":"r","text":"hi"}', 0),
            StoredEvent(8, b"run.completed", b'{"run_id":"r"}', 0),
        ]
    )
    assert frames == (
        b'id: 7\nevent: message.delta\ndata: {"run_id":"r","text":"hi"}\n\n'
        b'id: 8\nevent: run.completed\ndata: {"run_id":"r"}\n\n'
    )


# Events as the product stores them: ids past what fits 32 bits, a data event's type, text not in
# ASCII, escapes, a completed run's output put back into its data.
STORED = [
    StoredEvent(1, b"run.queued", b'{"run_id":"r","input":"hi"}', 1_700_000_000_000_000),
    StoredEvent(2, b"data.chart", b'{"run_id":"r","agent":"a","data":{"points":[1,2]}}', 1),
    StoredEvent(99, b"message.delta", '{"run_id":"r","text":"é \\"x\\" \\n ✓"}'.encode(), 2),
    StoredEvent(10**17, b"run.completed", b'{"run_id":"r","usage":{},"output":"done"}', 3),
]


def test_a_read_is_framed_from_its_entries_as_from_its_events() -> None:
    entries = [entry_of(event) for event in STORED]
    assert parse_raw_entries(entries) == STORED
    assert frame_entries(entries) == encode_events(STORED)
    assert ndjson_entries(entries) == ndjson_events(STORED)
    gap = Gap(reason="trimmed", first_available=1)
    for encode in (encode_batch, Ndjson().batch):
        of_entries = Chunk.of_entries(entries, size=0, terminal=False)
        assert encode(Batch([of_entries], gap)) == encode(Batch([Chunk(STORED)], gap))


def test_a_chunk_of_entries_counts_them_and_makes_events_of_them_only_if_asked() -> None:
    entries = [entry_of(event) for event in STORED]
    chunk = Chunk.of_entries(entries, size=7, terminal=False)
    assert (chunk.first, chunk.last, chunk.count, chunk.size) == (1, 10**17, 4, 7)
    assert [chunk.up_to(seq) for seq in (0, 1, 2, 98, 99, 10**17)] == [0, 1, 2, 2, 3, 4]
    assert chunk.encoded(encode_events, frame_entries) == encode_events(STORED)
    assert chunk._events is None  # framed from its entries: no event made
    assert chunk.events == STORED
    of_events = Chunk(STORED)
    assert [of_events.up_to(seq) for seq in (0, 1, 2, 98, 99, 10**17)] == [0, 1, 2, 2, 3, 4]
    assert of_events.encoded(encode_events, frame_entries) == encode_events(STORED)


def test_gap_frames_carry_no_id() -> None:
    frame = encode_gap(Gap(reason="trimmed", first_available=40))
    assert frame == b'event: gap\ndata: {"reason":"trimmed","first_available":40}\n\n'


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("", 0), ("0", 0), ("17", 17)])
def test_last_event_id_parses(value: str | None, expected: int) -> None:
    assert parse_last_event_id(value) == expected


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "17-0", " 3", "١٢", "9" * 19])
def test_bad_last_event_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidLastEventId):
        parse_last_event_id(value)
