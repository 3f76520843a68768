import pytest

from tokentail.gateway.encodings.sse import encode_events, encode_gap
from tokentail.gateway.reading.feed import parse_last_event_id
from tokentail.shared.errors import InvalidLastEventId
from tokentail.shared.events import Gap
from tokentail.shared.store import StoredEvent


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
