"""A child run's lane (shared/store/keys.py) and id (shared/vocabulary/records.py `child_run_id`)."""

from tokentail.gateway.access.ids import is_run_id
from tokentail.shared.store.keys import Keys, lane_of, parent_lane, session_of
from tokentail.shared.vocabulary.records import child_run_id


def test_a_lane_has_its_own_lease_and_meta_beside_the_sessions_stream_and_records_in_one_slot() -> None:
    keys = Keys("tt")
    session, child = keys.session("s_1"), keys.session(lane_of("s_1", "r_c"))
    assert (child.events, child.runs, child.gone, child.hooks, child.steered, child.branch) == (
        session.events, session.runs, session.gone, session.hooks, session.steered, session.branch,
    )  # fmt: skip
    own = (child.meta, child.lease, child.pending, child.steps, child.steers)
    assert not set(own) & {session.meta, session.lease, session.pending, session.steps, session.steers}
    assert all(key.startswith("tt:{s_1}:") for key in own)  # the session's hash tag: one Cluster slot
    assert child.parent == session.meta and session.parent == session.meta


def test_a_grandchilds_parent_is_its_parents_lane() -> None:
    keys = Keys("tt")
    lane = lane_of(lane_of("s_1", "r_c"), "r_g")
    assert lane == "s_1/r_c/r_g"
    assert parent_lane(lane) == "s_1/r_c" and session_of(lane) == "s_1"
    assert keys.session(lane).parent == keys.session("s_1/r_c").meta


def test_a_childs_id_is_a_run_id_made_of_its_parent_and_call_the_same_each_time() -> None:
    first = child_run_id("r_parent00001", "call_7")
    assert first == child_run_id("r_parent00001", "call_7") and is_run_id(first)
    assert first != child_run_id("r_parent00001", "call_8") != child_run_id("r_parent00002", "call_7")
