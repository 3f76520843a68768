"""Where a chat's message list leaves its session (gateway/commands/branching.py `branch_point`),
and where a session may be forked (`SessionRecord.turn_boundaries`), on records made by hand."""

from tokentail.gateway.commands.branching import ClientChat, Said, branch_point
from tokentail.shared.vocabulary.records import RunRecord, RunStatus, SessionRecord, SteerTaken


def run(run_id: str, text: str, queued: int, finished: int | None, status: RunStatus = "completed") -> RunRecord:
    return RunRecord(run_id=run_id, input=text, status=status, queued_seq=queued, finished_seq=finished)


# "What is 2 + 3?" ends at 5, "and times ten?" at 10.
SESSION = SessionRecord(
    session_id="s",
    created_at=0,
    runs=[run("r_1", "What is 2 + 3?", 1, 5), run("r_2", "and times ten?", 6, 10)],
    last_event_id=10,
)
Q1, Q2 = Said("What is 2 + 3?", "r_1"), Said("and times ten?", "r_2")


def test_a_list_that_agrees_with_every_run_goes_on_from_the_latest() -> None:
    assert branch_point(ClientChat("and plus 1?", [Q1, Q2]), SESSION) is None
    assert branch_point(ClientChat("and plus 1?", [Said(Q1.text), Said(Q2.text)]), SESSION) is None  # no ids


def test_a_list_that_ends_before_a_run_that_ended_branches_after_the_turns_it_agrees_with() -> None:
    assert branch_point(ClientChat("and times ten?", [Q1], regenerate=True), SESSION) == 5  # regenerate()
    assert branch_point(ClientChat("and times two?", [Q1], edited="u2"), SESSION) == 5  # an edit
    assert branch_point(ClientChat("What is 4 + 4?", [Said("What is 9 + 9?")]), SESSION) == 0  # the first edited
    assert branch_point(ClientChat("x", [Said(Q1.text, "r_other"), Q2]), SESSION) == 0  # another answer shown


def test_a_list_with_no_earlier_turn_says_nothing_unless_it_regenerates_or_edits() -> None:
    assert branch_point(ClientChat("and plus 1?"), SESSION) is None  # sent alone (or a new chat)
    assert branch_point(ClientChat("and times ten?", regenerate=True), SESSION) == 5  # its latest turn again
    assert branch_point(ClientChat("What is 2 + 3?", regenerate=True), SESSION) == 0
    assert branch_point(ClientChat("never asked", regenerate=True), SESSION) is None
    assert branch_point(ClientChat("and times two?", edited="r_2-input"), SESSION) == 5  # named by /messages
    assert branch_point(ClientChat("What is 4 + 4?", edited="client-made"), SESSION) == 0  # the first message


def test_runs_still_going_that_the_list_lacks_are_no_branch() -> None:
    going = SESSION.model_copy(update={"runs": [*SESSION.runs, run("r_3", "from another tab", 11, None, "running")]})
    assert branch_point(ClientChat("and plus 1?", [Q1, Q2]), going) is None


def test_the_steers_a_run_took_in_are_turns_of_the_conversation() -> None:
    # A chat that steers (TOKENTAIL_CHAT_WHILE_RUNNING=steer): "in words" steered r_1's answer.
    steered = run("r_1", "What is 2 + 3?", 1, 5).model_copy(
        update={"steers": [SteerTaken(steer_id="st_1", input="in words", output_at=3)]}
    )
    session = SESSION.model_copy(update={"runs": [steered, SESSION.runs[1]]})
    told = Said("in words", "r_1-steer-3")  # its answer, a message of its own (no run id: not compared)
    assert branch_point(ClientChat("and plus 1?", [Q1, told, Q2]), session) is None
    assert branch_point(ClientChat("and times ten?", [Q1, told], regenerate=True), session) == 5
    assert branch_point(ClientChat("x", [Q1, Said("in French"), Q2]), session) == 5  # the steer edited: after r_1


def test_a_session_is_forked_only_where_it_was_idle() -> None:
    assert SESSION.turn_boundaries() == [0, 5, 10]
    # r_2 was queued (at 4) before r_1 ended (at 5): at 5 the session was not idle.
    in_line = SESSION.model_copy(update={"runs": [run("r_1", "a", 1, 5), run("r_2", "b", 4, 10)]})
    assert in_line.turn_boundaries() == [0, 10]
