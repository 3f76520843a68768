"""The session scripts' own contracts (shared/store/scripts/runs.py), run by fakeredis's Lua."""

from tests.support.sessions import completion, delta_of, make_run, make_session
from tests.support.writes import AllWrites
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.records import RunRecord


async def test_params_survive_the_lua_scripts_exactly(store: SessionStore, runs: AllWrites) -> None:
    # cjson would turn [] into {} (fakeredis's into []) and large integers into floats: params travel as a string.
    session = make_session()
    params = {"seed": 123456789012345678, "stop": [], "none": {}, "nested": {"list": [1, 2.5, "x"]}}
    run = RunRecord(run_id=make_run().run_id, input="hi", model="scripted", params=params)
    await runs.queue_run(session.session_id, run, create=session)
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease")
    assert started is not None and started.run.params == params
    assert (await store.get_session(session.session_id)).runs[0].params == params


async def test_a_start_reads_the_conversation_so_far_with_its_claim(runs: AllWrites) -> None:
    """The worker's agent is given the session's completed runs: the start's reply carries them (no read
    of the session apart), none for a session's first run, the same when the start is sent again."""
    session = make_session()
    first, second = make_run("first question"), make_run("second question")
    await runs.queue_run(session.session_id, first, create=session)
    started = await runs.start_run(session.session_id, first.run_id, first.run_id, token="lease-1")
    assert started is not None and started.earlier == []
    await started.lease.append([delta_of(first.run_id, "an answer")], ending=completion(first.run_id, "an answer"))
    await runs.queue_run(session.session_id, second)
    for _ in range(2):  # its reply lost, the claim is sent again: it answers as it did
        again = await runs.start_run(session.session_id, second.run_id, second.run_id, token="lease-2")
        assert again is not None and again.run.run_id == second.run_id
        assert [(run.run_id, run.input, run.output) for run in again.earlier] == [
            (first.run_id, "first question", "an answer")
        ]
