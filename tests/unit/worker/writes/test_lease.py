"""The lease keeper: what each renewal answer makes it do, and that it stops with the run."""

import asyncio
from collections.abc import Iterator

from tests.support.waiting import eventually
from tokentail.shared.store.scripts.runs import Renewal
from tokentail.worker.writes.lease import LeaseKeeper
from tokentail.worker.writes.run_writes import RunLease

LEASE_MS = 30  # a beat every 10 ms


class ScriptedLease:
    """Answers renewals from a script; past its end, RENEWED."""

    session_id = "s"
    session = "s"  # (as logs name it)
    run_id = "r"

    def __init__(self, *answers: Renewal | Exception) -> None:
        self._answers: Iterator[Renewal | Exception] = iter(answers)
        self.renewals = 0

    async def renew(self) -> Renewal:
        self.renewals += 1
        answer = next(self._answers, Renewal.RENEWED)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _keeper(lease: ScriptedLease, events: list[str]) -> LeaseKeeper:
    fake: RunLease = lease  # type: ignore[assignment]
    return LeaseKeeper(fake, LEASE_MS, on_cancel=lambda: events.append("cancel"), on_lost=lambda: events.append("lost"))


async def _renewed(lease: ScriptedLease, times: int) -> None:
    await eventually(lambda: lease.renewals >= times, within=5, interval=0.005)


async def test_a_pending_cancel_is_passed_on_and_the_lease_kept() -> None:
    events: list[str] = []
    lease = ScriptedLease(Renewal.RENEWED, Renewal.CANCEL_PENDING)
    async with _keeper(lease, events):
        await _renewed(lease, 4)
    assert events == ["cancel"]  # said once, and renewals went on after it


async def test_a_lost_lease_is_said_once_and_renewals_stop() -> None:
    events: list[str] = []
    lease = ScriptedLease(Renewal.LOST)
    async with _keeper(lease, events):
        await _renewed(lease, 1)
        await asyncio.sleep(LEASE_MS / 1000)  # three beats more
    assert events == ["lost"]
    assert lease.renewals == 1


async def test_a_failed_renewal_is_tried_again_at_the_next_beat() -> None:
    events: list[str] = []
    lease = ScriptedLease(ConnectionError("Redis went away"), ConnectionError("still away"), Renewal.LOST)
    async with _keeper(lease, events):
        await _renewed(lease, 3)
        await asyncio.sleep(0.02)
    assert events == ["lost"]  # the failures neither stopped the keeper nor looked like a loss


async def test_renewals_stop_when_the_run_leaves_the_keeper() -> None:
    lease = ScriptedLease()
    async with _keeper(lease, []):
        await _renewed(lease, 2)
    renewals = lease.renewals
    await asyncio.sleep(3 * LEASE_MS / 1000)
    assert lease.renewals == renewals
