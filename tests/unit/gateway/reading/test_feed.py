"""gateway/reading/feed.py's own decisions: where a resuming client starts, what it is told first, how much
one catch-up read asks for. (Reading and following a stream: tests/integration/test_hub.py.)"""

from dataclasses import dataclass

import pytest

from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.feed import (
    FIRST_READ_COUNT,
    READ_BUDGET_BYTES,
    EventFeed,
    Start,
    parse_last_event_id,
    start_position,
)
from tokentail.shared.store.reads import Entry, SessionStore, StoredEvent, entry_of
from tokentail.shared.vocabulary.errors import InvalidLastEventId
from tokentail.shared.vocabulary.events import Gap


@dataclass
class FakeStore:
    """A session's stream as start_position sees it: its last id, whether a run is queued or
    running, and its first stored id (None once the stream itself is gone)."""

    last_seq: int
    active: bool
    first: int | None

    async def stream_start(self, session_id: str, after: int = 0) -> tuple[int, bool, int | None]:
        return self.last_seq, self.active, self.first


async def _start(after: int, last_seq: int, active: bool = False, first: int | None = 1) -> Start:
    store: SessionStore = FakeStore(last_seq, active, first)  # type: ignore[assignment]
    return await start_position(store, "s_1", after)


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("", 0), ("0", 0), ("17", 17), ("9" * 18, 10**18 - 1)])
def test_a_last_event_id_is_a_non_negative_integer(value: str | None, expected: int) -> None:
    assert parse_last_event_id(value) == expected


@pytest.mark.parametrize("value", ["-1", "1.5", "1e3", " 1", "0x10", "١٢", "9" * 19, "abc"])
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(InvalidLastEventId, match="non-negative integer"):
        parse_last_event_id(value)


async def test_a_new_client_starts_at_the_beginning() -> None:
    assert await _start(0, last_seq=5, active=True) == Start(0, None, idle=False, replay_until=0, active=True)


async def test_a_resuming_client_continues_after_its_id_and_knows_what_it_replays() -> None:
    assert await _start(3, last_seq=5, active=True) == Start(3, None, idle=False, replay_until=5, active=True)


async def test_a_client_that_has_everything_of_a_finished_session_is_idle() -> None:
    assert (await _start(5, last_seq=5, active=False)).idle
    assert not (await _start(5, last_seq=5, active=True)).idle  # a run is coming: wait for it
    assert not (await _start(4, last_seq=5, active=False)).idle  # one event left to send


async def test_an_id_ahead_of_the_stream_is_an_unknown_id_and_replays_what_there_is() -> None:
    start = await _start(10_000, last_seq=5, active=False, first=1)
    assert start.gap == Gap(reason="unknown_id", first_available=1)
    assert start.after == 0 and not start.idle
    # A stream whose entries all expired: nothing to replay; the client waits from after the last id.
    start = await _start(10_000, last_seq=5, active=True, first=None)
    assert start.gap == Gap(reason="unknown_id", first_available=6) and start.after == 5


async def test_an_id_before_the_trimmed_start_is_a_trimmed_gap() -> None:
    start = await _start(2, last_seq=500, active=True, first=100)
    assert start.gap == Gap(reason="trimmed", first_available=100)
    assert start.after == 99 and start.replay_until == 500
    # The next id is still there: no gap.
    assert (await _start(99, last_seq=500, first=100)).gap is None


async def test_a_stream_gone_behind_its_meta_is_an_expired_gap() -> None:
    start = await _start(2, last_seq=7, active=False, first=None)
    assert start.gap == Gap(reason="expired", first_available=8)
    assert start.after == 7 and start.idle


class _Hub:
    store = None
    first_deltas = None  # counts no run's first delta


def _events(first: int, count: int, size: int) -> list[Entry]:
    """A catch-up read's entries, as Redis sends them."""
    return [entry_of(StoredEvent(seq, b"message.delta", b"x" * size, 0)) for seq in range(first, first + count)]


def _feed(after: int = 0, batch: int = 500) -> EventFeed:
    hub: StreamHub = _Hub()  # type: ignore[assignment]
    return EventFeed(hub, "s_1", Start(after, None, False), batch, until_idle=True, transport="sse")


def test_a_read_that_skipped_ids_is_announced_as_a_gap() -> None:
    feed = _feed(after=10)
    batch = feed._deliver(_events(11, 3, 10))
    assert batch.gap is None and [e.seq for e in batch.events] == [11, 12, 13] and feed.after == 13
    batch = feed._deliver(_events(40, 2, 10))  # trimmed under a slow reader
    assert batch.gap == Gap(reason="trimmed", first_available=40) and feed.after == 41


def test_reads_grow_by_doubling_up_to_the_batch_and_shrink_to_the_byte_budget() -> None:
    feed = _feed(batch=100)
    counts = []
    for _ in range(5):
        feed._deliver(_events(feed.after + 1, 4, 10))  # small events
        counts.append(feed._count)
    assert counts == [2 * FIRST_READ_COUNT, 64, 100, 100, 100]
    big = READ_BUDGET_BYTES // 4
    feed._deliver(_events(feed.after + 1, 8, big))  # 8 events of a quarter budget: 4 fit
    assert feed._count == 4
    feed._deliver(_events(feed.after + 1, 1, 10 * READ_BUDGET_BYTES))  # one huge event: still one per read
    assert feed._count == 1
