"""gateway/access/limits.py and its scripts (count.lua, spend_fork.lua, take_slot.lua) on fakeredis, on the limits'
clock held still (tests/fixtures/limits_clock.py). (Through the HTTP API and across replicas:
tests/integration/test_limits.py.)"""

import asyncio
import types

import pytest
from redis.asyncio import Redis

from tests.fixtures.limits_clock import START
from tests.support.waiting import eventually, scaled
from tokentail.gateway.access import limits
from tokentail.gateway.access.limits import SLOT_TTL_SECONDS, STREAM_RETRY_AFTER, RunBudget, StreamSlots
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.vocabulary.errors import ForkBytesLimited, RateLimited, TooManyStreams


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


async def test_runs_are_counted_per_tenant_and_minute(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace
) -> None:
    budget = RunBudget(redis, keys, per_minute=3)
    for _ in range(3):
        await budget.spend("acme")
    with pytest.raises(RateLimited) as refused:
        await budget.spend("acme")
    assert refused.value.retry_after == 50  # the minute's 50 s left, exactly
    await budget.spend("beta")  # a budget of its own
    limits_clock.value += 49.5
    with pytest.raises(RateLimited) as refused:
        await budget.spend("acme")
    assert refused.value.retry_after == 1
    limits_clock.value += 0.5  # the next minute
    await budget.spend("acme")
    # Each minute's counter expires on its own (kept two windows, so a late request still finds it).
    key = keys.tenant_runs("acme", int(limits_clock.value // 60))
    assert await redis.get(key) == b"1" and 0 < await redis.ttl(key) <= 120


async def test_no_run_limit_counts_nothing(redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace) -> None:
    budget = RunBudget(redis, keys, per_minute=0)
    for _ in range(10):
        await budget.spend("acme")
    assert await redis.keys(f"{keys.prefix}:*") == []


async def test_a_fork_spends_one_run_and_its_bytes_or_nothing(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace
) -> None:
    budget = RunBudget(redis, keys, per_minute=3, fork_bytes_per_hour=1000)
    await budget.spend_fork("acme", 600)
    with pytest.raises(ForkBytesLimited) as too_much:
        await budget.spend_fork("acme", 401)
    assert too_much.value.retry_after == 2810  # the hour's 2810 s left, exactly
    await budget.spend_fork("acme", 400)  # the refused fork counted nothing: this one fills the hour
    await budget.spend("acme")  # the minute's third run
    with pytest.raises(RateLimited) as refused:
        await budget.spend_fork("acme", 0)
    assert type(refused.value) is RateLimited and refused.value.retry_after == 50
    minute, hour = int(limits_clock.value // 60), int(limits_clock.value // 3600)
    assert await redis.get(keys.tenant_runs("acme", minute)) == b"3"
    assert await redis.get(keys.tenant_fork_bytes("acme", hour)) == b"1000"
    assert 0 < await redis.ttl(keys.tenant_fork_bytes("acme", hour)) <= 7200  # kept two windows, as the runs'
    await budget.spend_fork("beta", 1000)  # a budget of its own
    limits_clock.value += 2810  # the next hour (and minute)
    await budget.spend_fork("acme", 1000)


async def test_no_fork_limit_counts_nothing_of_it(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace
) -> None:
    for _ in range(10):
        await RunBudget(redis, keys, per_minute=0, fork_bytes_per_hour=0).spend_fork("acme", 10**9)
    assert await redis.keys(f"{keys.prefix}:*") == []
    await RunBudget(redis, keys, per_minute=0, fork_bytes_per_hour=1000).spend_fork("acme", 10)
    hour = keys.tenant_fork_bytes("acme", int(limits_clock.value // 3600))
    assert await redis.keys(f"{keys.prefix}:*") == [hour.encode()]
    await RunBudget(redis, keys, per_minute=5, fork_bytes_per_hour=0).spend_fork("beta", 10**9)
    assert await redis.get(keys.tenant_runs("beta", int(limits_clock.value // 60))) == b"1"
    assert await redis.keys(f"{keys.prefix}:tenant:{{beta}}:fork-bytes:*") == []


async def test_stream_slots_are_bounded_per_tenant_and_freed_on_release(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace
) -> None:
    slots = StreamSlots(redis, keys, limit=2, wait_seconds=0)
    first, second = await slots.take("acme"), await slots.take("acme")
    assert first is not None and second is not None and first != second
    with pytest.raises(TooManyStreams) as refused:
        await slots.take("acme")
    assert refused.value.retry_after == STREAM_RETRY_AFTER
    assert await slots.take("beta") is not None  # another tenant's slots are its own
    await slots.release(first)
    await slots.release(first)  # released twice: nothing more happens
    await slots.release(None)
    third = await slots.take("acme")
    assert third is not None
    assert await redis.zcard(keys.tenant_streams("acme")) == 2


async def test_one_stream_token_holds_a_bounded_share_of_its_tenant_s_streams(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace
) -> None:
    slots = StreamSlots(redis, keys, limit=10, per_token=4, wait_seconds=0)
    browser = [await slots.take("acme", "s_browser") for _ in range(4)]
    with pytest.raises(TooManyStreams, match="this stream token has 4 streams open"):
        await slots.take("acme", "s_browser")
    # The tenant's other end users, and its backend (an API key: no token), still open theirs.
    others = [await slots.take("acme", "s_other") for _ in range(4)] + [await slots.take("acme") for _ in range(2)]
    assert None not in others
    with pytest.raises(TooManyStreams, match="this tenant has 10"):
        await slots.take("acme", "s_third")
    # A stream the browser closes frees its share at once (given back, not yet flushed: removed first).
    await slots.release(browser[0])
    await slots.release(others[0])
    assert await slots.take("acme", "s_browser") is not None
    await slots.flush()
    assert await redis.zcard(keys.token_streams("acme", "s_browser")) == 4
    assert await redis.zcard(keys.token_streams("acme", "s_other")) == 3
    assert await redis.zcard(keys.tenant_streams("acme")) == 9


async def test_a_dead_gateway_s_slots_lapse_once_nobody_renews_them(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace
) -> None:
    dead, alive = StreamSlots(redis, keys, limit=1, wait_seconds=0), StreamSlots(redis, keys, limit=1, wait_seconds=0)
    assert await dead.take("acme") is not None  # never released: its gateway died
    with pytest.raises(TooManyStreams):
        await alive.take("acme")
    limits_clock.value += SLOT_TTL_SECONDS - 1
    with pytest.raises(TooManyStreams):
        await alive.take("acme")
    limits_clock.value += 1
    assert await alive.take("acme") is not None


async def test_no_stream_limit_takes_no_slot(redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace) -> None:
    slots = StreamSlots(redis, keys, limit=0)
    assert await slots.take("acme") is None
    assert await redis.keys(f"{keys.prefix}:*") == []


async def test_a_live_gateway_renews_the_slots_of_its_open_streams(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    slots, other_gateway = (StreamSlots(redis, keys, limit=2, wait_seconds=0) for _ in range(2))
    open_slot, closed_slot = await slots.take("acme"), await slots.take("acme")
    await slots.release(closed_slot)
    beats = 0

    async def beat(seconds: float) -> None:  # renew_forever's sleep, on the test's clock
        nonlocal beats
        if beats == 3:
            raise asyncio.CancelledError
        beats += 1
        limits_clock.value += seconds

    with monkeypatch.context() as patched, pytest.raises(asyncio.CancelledError):
        patched.setattr(limits, "asyncio", types.SimpleNamespace(sleep=beat))
        await slots.renew_forever()
    assert limits_clock.value == START + SLOT_TTL_SECONDS  # its first slot would have lapsed now
    assert await other_gateway.take("acme") is not None  # the released slot was not renewed...
    with pytest.raises(TooManyStreams):  # ...the open stream's was
        await other_gateway.take("acme")
    assert open_slot is not None and await redis.zscore(keys.tenant_streams("acme"), open_slot) is not None


async def test_a_slot_given_back_leaves_redis_in_the_background_or_with_the_next_take_of_its_tenant(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace
) -> None:
    slots, other_gateway = (StreamSlots(redis, keys, limit=2, wait_seconds=0) for _ in range(2))
    for slot in [await slots.take("acme"), await slots.take("acme")]:
        await slots.release(slot)  # returns at once: no round trip on a request's path
    assert await redis.zcard(keys.tenant_streams("acme")) == 2
    with pytest.raises(TooManyStreams):  # another gateway counts them until they are flushed...
        await other_gateway.take("acme")
    reconnected = await slots.take("acme")  # ...this one's own take removes them first
    assert await redis.zrange(keys.tenant_streams("acme"), 0, -1) == [reconnected.encode()]  # type: ignore[union-attr]
    await slots.release(reconnected)
    flushing = asyncio.create_task(slots.flush_forever())

    async def flushed() -> None:
        assert await redis.zcard(keys.tenant_streams("acme")) == 0

    await eventually(flushed)
    flushing.cancel()
    assert await other_gateway.take("acme") is not None


async def test_a_take_waits_a_while_for_a_slot_of_its_tenant_before_refusing(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace
) -> None:
    # A client reconnecting may come before its old stream is seen to end: it waits, not 429.
    slots = StreamSlots(redis, keys, limit=1, wait_seconds=5)
    old = await slots.take("acme")
    reconnecting = asyncio.create_task(slots.take("acme"))
    await asyncio.sleep(0.1)
    assert not reconnecting.done()
    await slots.release(old)
    assert await asyncio.wait_for(reconnecting, scaled(5)) is not None
    impatient = StreamSlots(redis, keys, limit=1, wait_seconds=0.3)
    with pytest.raises(TooManyStreams):  # nothing ends: refused once the wait is over
        await impatient.take("acme")


async def test_a_stream_token_s_bound_is_at_most_its_tenant_s(
    redis: Redis, keys: Keys, limits_clock: types.SimpleNamespace
) -> None:
    slots = StreamSlots(redis, keys, limit=4, per_token=16, wait_seconds=0)
    assert None not in [await slots.take("acme", "s_browser") for _ in range(4)]
    with pytest.raises(TooManyStreams, match="this stream token has 4 streams open already"):
        await slots.take("acme", "s_browser")  # not 16: its tenant's 4
    assert await redis.zcard(keys.token_streams("acme", "s_browser")) == 4
