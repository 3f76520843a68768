"""tests/support/waiting.py: the one way tests wait for state they cannot be told about."""

import asyncio
import os

import pytest

from tests.support.waiting import MAX_SLOWDOWN, eventually, eventually_sync, scaled, slowdown


class Countdown:
    """False (or failing) for its first `n` tries, then true."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.tries = 0

    def ready(self) -> bool:
        self.tries += 1
        self.left -= 1
        return self.left < 0

    def check(self) -> None:
        assert self.ready(), "not yet"

    async def ready_async(self) -> bool:
        await asyncio.sleep(0)
        return self.ready()


async def test_a_predicate_is_retried_until_it_holds() -> None:
    countdown = Countdown(3)
    assert await eventually(countdown.ready, interval=0) is True
    assert countdown.tries == 4


async def test_an_async_check_is_awaited_and_its_result_returned() -> None:
    countdown = Countdown(2)
    assert await eventually(countdown.ready_async, interval=0) is True
    assert countdown.tries == 3

    async def value() -> dict[str, int]:
        return {"answer": 42}

    assert await eventually(value) == {"answer": 42}


async def test_an_assertion_is_retried_until_it_holds() -> None:
    countdown = Countdown(2)
    await eventually(countdown.check, interval=0)
    assert countdown.tries == 3


async def test_at_the_deadline_the_last_failure_is_raised_with_the_check_named() -> None:
    countdown = Countdown(10**9)
    with pytest.raises(AssertionError, match=r"Countdown.check: still failing \(AssertionError: not yet") as failed:
        await eventually(countdown.check, within=0.05)
    assert isinstance(failed.value.__cause__, AssertionError)
    assert countdown.tries > 1


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the bounds they set: as on a quiet machine."""
    monkeypatch.setenv("TOKENTAIL_TEST_SLOWDOWN", "1")


def test_waits_stretch_with_the_load_per_core_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENTAIL_TEST_SLOWDOWN")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for load, factor in ((0.5, 1.0), (2.0, 1.0), (5.0, 2.5), (40.0, MAX_SLOWDOWN)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert slowdown() == factor and scaled(10) == 10 * factor
    monkeypatch.setenv("TOKENTAIL_TEST_SLOWDOWN", "3")
    assert scaled(10) == 30


async def test_a_false_lambda_is_named_by_its_source() -> None:
    with pytest.raises(AssertionError, match=r"lambda: 1 \+ 1 == 3.*still false after 0.05 s"):
        await eventually(lambda: 1 + 1 == 3, within=0.05)


async def test_other_errors_end_the_wait_at_once_unless_ignored() -> None:
    tries = 0

    def broken() -> bool:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionRefusedError("not listening yet")
        return True

    with pytest.raises(ConnectionRefusedError):
        await eventually(broken)
    assert tries == 1
    assert await eventually(broken, ignoring=(OSError,), interval=0) is True
    assert tries == 3


async def test_a_try_still_running_at_the_deadline_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def hangs() -> bool:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    with pytest.raises(AssertionError, match="still false after 0.05 s and 1 tries"):
        await eventually(hangs, within=0.05)
    assert cancelled.is_set()


async def test_a_timeout_error_of_the_check_s_own_is_not_the_deadline() -> None:
    def times_out() -> bool:
        raise TimeoutError("the check's own")

    with pytest.raises(TimeoutError, match="the check's own"):
        await eventually(times_out)


def test_the_sync_variant_retries_and_names_the_check() -> None:
    countdown = Countdown(2)
    assert eventually_sync(countdown.ready, interval=0) is True
    assert countdown.tries == 3
    with pytest.raises(AssertionError, match=r"the server: still false"):
        eventually_sync(lambda: False, within=0.05, what="the server")
    with pytest.raises(KeyError):
        eventually_sync(lambda: {"present": 1}["missing"])
