"""The script runner (shared/store/scripts/runner.py): one way to call a script, its reply typed, a fenced
script's errors as the write side's exceptions."""

import fakeredis
import pytest

from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.shared.store.scripts.runs import AppendEvents, AppendKeys, AppendShared
from tokentail.shared.store.scripts.sessions import CreateKeys, CreateSession, Creation
from tokentail.shared.vocabulary.errors import LeaseLost, WritesLost


def _append(expect: int, token: str = "token") -> AppendEvents:
    return AppendEvents(AppendShared(100), AppendKeys("s:meta", "s:events", "s:lease"), "r1", token, expect, [])


async def test_a_reply_comes_back_typed(redis: fakeredis.FakeAsyncRedis) -> None:
    run = ScriptRunner(redis, Topology())
    create = CreateSession(CreateKeys("s:meta", "s:gone"), 60, 600, "public", ["tenant", "public"])
    assert await run(create) is Creation.MADE
    assert await run(create) is Creation.EXISTS


async def test_a_fenced_script_fails_as_a_lost_lease_and_lost_writes_as_such(redis: fakeredis.FakeAsyncRedis) -> None:
    run = ScriptRunner(redis, Topology())
    await redis.set("s:lease", "token")
    for seq in (1, 2, 3):  # the session's events 1..3
        await redis.xadd("s:events", {"type": "status", "data": "{}", "ts": "0"}, id=f"{seq}-0")
    with pytest.raises(LeaseLost):
        await run(_append(expect=3, token="another"))
    with pytest.raises(WritesLost) as lost:
        await run(_append(expect=5))  # told it wrote up to 5: Redis has 3
    assert lost.value.last_seq == 3
    assert await run(_append(expect=3)) == 3  # nothing to append: the session's seq
