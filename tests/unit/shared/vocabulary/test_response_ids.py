"""Response ids (shared/vocabulary/response_ids.py): a Responses API id names its session, run and segment."""

import pytest

from tokentail.shared.vocabulary.response_ids import parse_response_id, response_id

pytestmark = pytest.mark.responses


def test_response_ids_name_the_session_run_and_segment() -> None:
    session, run = "s_" + "a-b_" * 5 + "cd", "r_" + "x_y-" * 3
    assert parse_response_id(response_id(session, run)) == (session, run, 0)
    assert parse_response_id(response_id(session, run, 12)) == (session, run, 12)
    for wrong in ("resp_nothing", response_id(session, run) + ".0", "resp_" + session + run[:-1], session):
        assert parse_response_id(wrong) is None
