"""The session scripts' own contracts (shared/scripts/runs.py), run by fakeredis's Lua."""

from tests.sessions import make_run, make_session
from tests.writes import AllWrites
from tokentail.shared.records import RunRecord
from tokentail.shared.store import SessionStore


async def test_params_survive_the_lua_scripts_exactly(store: SessionStore, runs: AllWrites) -> None:
    # cjson would turn [] into {} (fakeredis's into []) and large integers into floats: params travel as a string.
    session = make_session()
    params = {"seed": 123456789012345678, "stop": [], "none": {}, "nested": {"list": [1, 2.5, "x"]}}
    run = RunRecord(run_id=make_run().run_id, input="hi", model="scripted", params=params)
    await runs.queue_run(session.session_id, run, create=session)
    started = await runs.start_run(session.session_id, run.run_id, run.run_id, token="lease")
    assert started is not None and started.run.params == params
    assert (await store.get_session(session.session_id)).runs[0].params == params
