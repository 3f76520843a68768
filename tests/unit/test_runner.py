"""The script runner (shared/scripts/runner.py): one way to call a script, its reply typed, a fenced
script's errors as the write side's exceptions, batched contracts through their pipeline."""

import asyncio
from typing import Any

import fakeredis
import pytest

from tokentail.shared.errors import LeaseLost, WritesLost
from tokentail.shared.scripts.contract import Topology
from tokentail.shared.scripts.runner import ScriptRunner
from tokentail.shared.scripts.runs import AppendEvents, AppendKeys, AppendShared, Renewal, RenewKeys, RenewLease
from tokentail.shared.scripts.sessions import CreateKeys, CreateSession, Creation


def _append(expect: int, token: str = "token") -> AppendEvents:
    return AppendEvents(AppendShared(100), AppendKeys("s:meta", "s:events", "s:lease"), "r1", token, "a1", expect, [])


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


class _Recording:
    """A stand-in pipeline: it answers each call with a reply of its own."""

    def __init__(self, reply: Any) -> None:
        self.calls: list[tuple[list[Any], list[Any]]] = []
        self._reply = reply

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        self.calls.append((keys, args))
        return self._reply

    def submit_many(self, calls: list[tuple[list[Any], list[Any]]]) -> "asyncio.Future[list[Any]]":
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.calls += calls
        future.set_result([self._reply] * len(calls))
        return future


async def test_a_batched_contract_goes_through_its_pipeline_and_the_rest_do_not(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    renewals = _Recording(2)
    run = ScriptRunner(redis, Topology(split_queue=True), batched={RenewLease: renewals})
    renew = RenewLease(RenewKeys("s:lease", "s:meta", "s:steers"), "token", 3000, "r1", "s")
    assert await run(renew) is Renewal.CANCEL_PENDING
    assert renewals.calls == [(["s:lease", "s:meta", "s:steers"], ["token", 3000, "r1", "s"])]
    assert run.batches(RenewLease) and not run.batches(AppendEvents)
    (sent,) = await run.submit_many([renew])
    assert renew.parse(sent) is Renewal.CANCEL_PENDING and len(renewals.calls) == 2
    create = CreateSession(CreateKeys("s:meta", "s:gone"), 60, 600, "public", [])
    assert await run(create) is Creation.MADE and len(renewals.calls) == 2  # on the Redis itself
