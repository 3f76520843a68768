"""The frames of finished streams a gateway keeps: resumed by a slice, bounded by bytes."""

import pytest

from tokentail.gateway.protocols.responses.finished import FinishedStreams

pytestmark = pytest.mark.responses


def test_a_kept_stream_is_resumed_from_any_position_it_holds_and_not_before() -> None:
    kept = FinishedStreams()
    kept.keep("r1", 3, [b"3", b"4", b"5"])
    assert kept.after("r1", 2) == b"345"
    assert kept.after("r1", 4) == b"5"
    assert kept.after("r1", 5) == b""
    assert kept.after("r1", 1) is None  # the reader that kept it started after 2: nothing before
    kept.keep("r1", 0, [b"0", b"1", b"2", b"3", b"4", b"5"])  # a longer copy replaces it
    assert kept.after("r1", -1) == b"012345"
    kept.keep("r1", 4, [b"4", b"5"])  # a shorter one does not
    assert kept.after("r1", 0) == b"12345"
    assert kept.after("other", -1) is None


def test_the_least_recently_used_go_first_and_none_larger_than_the_bound_is_kept() -> None:
    kept = FinishedStreams(max_bytes=40)
    kept.keep("a", 0, [b"x" * 10])
    kept.keep("b", 0, [b"y" * 10])
    assert kept.after("a", -1) is not None  # used: now the most recent
    kept.keep("c", 0, [b"z" * 10, b"z" * 20])
    assert kept.after("b", -1) is None and kept.after("a", -1) == b"x" * 10
    kept.keep("d", 0, [b"w" * 41])  # over the whole bound: never kept, nothing else dropped for it
    assert kept.after("d", -1) is None and kept.after("c", -1) is not None
