"""The write journal: which of a run's appends to write again for a session that lost events."""

from tokentail.worker.writes.lost_writes import JOURNAL_BYTES, WriteJournal


def _events(count: int, size: int = 10) -> list[tuple[str, str]]:
    return [("message.delta", "x" * size)] * count


def test_the_appends_after_the_sessions_last_seq_in_order() -> None:
    journal = WriteJournal()
    journal.wrote(_events(2), 4)  # 3, 4
    journal.wrote(_events(1), 5)
    journal.wrote(_events(3), 8)  # 6, 7, 8
    assert journal.written == 8
    assert [append.last for append in journal.lost(5) or []] == [8]
    assert [append.last for append in journal.lost(4) or []] == [5, 8]
    assert [append.first for append in journal.lost(2) or []] == [3, 5, 6]


def test_not_when_someone_elses_events_are_among_the_lost() -> None:
    journal = WriteJournal()
    journal.wrote(_events(1), 3)
    journal.wrote(_events(1), 5)  # 4 was the gateway's
    assert journal.lost(3) is None  # 4 is not ours to write again
    assert journal.lost(2) is None
    assert [append.last for append in journal.lost(4) or []] == [5]


def test_not_past_what_it_keeps_and_it_keeps_a_bounded_amount() -> None:
    journal = WriteJournal()
    size = JOURNAL_BYTES // 4
    for number in range(1, 11):
        journal.wrote(_events(1, size), number)
    kept = journal.lost(0)
    assert kept is None  # the first appends were dropped
    assert journal.lost(6) is not None and journal.lost(5) is None  # four kept
    assert journal.written == 10


def test_a_bigger_append_than_the_bound_is_still_kept_alone() -> None:
    journal = WriteJournal()
    journal.wrote(_events(1), 1)
    journal.wrote(_events(1, JOURNAL_BYTES * 2), 2)
    assert [len(append.events[0][1]) for append in journal.lost(1) or []] == [JOURNAL_BYTES * 2]
