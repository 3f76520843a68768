"""The reaper: takes over only on a Redis that has been healthy for a whole lease, and pages past
index entries it has nothing to do for."""

import pytest
from redis import exceptions as redis_errors

from tests.support.writes import AllWrites
from tokentail.shared.store.scripts.checks import Due
from tokentail.shared.store.scripts.runs import Look, Requeue
from tokentail.worker.process.reaper import PAGE, Reaper

LEASE = 5.0
INTERVAL = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeIndex:
    """The leases index as the reaper sees it: the entries due, settled once looked at."""

    def __init__(self) -> None:
        self.due_entries: dict[str, Requeue | Exception] = {}

    async def due(self, offset: int, count: int) -> list[Due]:
        return [Due(member, b"0") for member in list(self.due_entries)[offset : offset + count]]

    async def settle(self, entry: Due, look_again_at: int | None = None) -> None:
        del self.due_entries[entry.member]  # dropped, or moved out of the due range


class FakeLifecycle:
    """Each due entry with what looking at its session finds."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.leases = FakeIndex()
        self.refuse_writes: Exception | None = None
        self.write_takes = 0.0
        self.requeued: list[str] = []

    @property
    def expired(self) -> dict[str, Requeue | Exception]:
        return self.leases.due_entries

    @expired.setter
    def expired(self, entries: dict[str, Requeue | Exception]) -> None:
        self.leases.due_entries = entries

    async def writable(self) -> None:
        self.clock.now += self.write_takes
        if self.refuse_writes is not None:
            raise self.refuse_writes

    async def look(self, session_id: str) -> Look:
        outcome = self.expired[session_id]
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is Requeue.REQUEUED:
            self.requeued.append(session_id)
        return Look(outcome, 1 if outcome is Requeue.RENEWED else None)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> FakeLifecycle:
    return FakeLifecycle(clock)


@pytest.fixture
def reaper(store: FakeLifecycle, clock: Clock) -> Reaper:
    fake: AllWrites = store  # type: ignore[assignment]
    return Reaper(fake, INTERVAL, LEASE, clock=clock)


async def _sweeps(reaper: Reaper, clock: Clock, seconds: float) -> int:
    """Sweep every INTERVAL for `seconds`, as `run_forever` does; the runs requeued."""
    requeued = 0
    for _ in range(int(seconds / INTERVAL)):
        clock.now += INTERVAL
        requeued += await reaper.sweep()
    return requeued


async def test_a_new_reaper_waits_a_lease_before_its_first_takeover(
    reaper: Reaper, store: FakeLifecycle, clock: Clock
) -> None:
    # The workers holding those leases may have been cut off from Redis until a moment ago.
    store.expired = {"s_dead": Requeue.REQUEUED}
    assert await _sweeps(reaper, clock, LEASE - INTERVAL) == 0
    assert await _sweeps(reaper, clock, 2 * INTERVAL) == 1 and store.requeued == ["s_dead"]


@pytest.mark.parametrize(
    "outage",
    [redis_errors.ConnectionError("gone"), redis_errors.OutOfMemoryError("full"), redis_errors.ReadOnlyError("ro")],
    ids=["unreachable", "full", "read-only"],
)
async def test_after_an_outage_holders_get_a_whole_lease_to_renew(
    reaper: Reaper, store: FakeLifecycle, clock: Clock, outage: Exception
) -> None:
    await _sweeps(reaper, clock, 2 * LEASE)  # healthy for long
    store.refuse_writes = outage
    for _ in range(3):
        clock.now += INTERVAL
        with pytest.raises(type(outage)):
            await reaper.sweep()
    store.refuse_writes = None
    store.expired = {"s_cut_off": Requeue.REQUEUED}  # its worker's renewals all failed meanwhile
    assert await _sweeps(reaper, clock, LEASE - INTERVAL) == 0
    store.expired = {"s_cut_off": Requeue.RENEWED}  # ... and it renewed once Redis was back
    assert await _sweeps(reaper, clock, 2 * INTERVAL) == 0 and store.requeued == []


async def test_a_slow_or_late_sweep_counts_as_an_outage(reaper: Reaper, store: FakeLifecycle, clock: Clock) -> None:
    await _sweeps(reaper, clock, 2 * LEASE)
    store.expired = {"s_paused": Requeue.REQUEUED}
    store.write_takes = 5.0  # Redis paused (DEBUG SLEEP, SIGSTOP): the write waited 5 s
    assert await _sweeps(reaper, clock, INTERVAL) == 0
    store.write_takes = 0.0
    assert await _sweeps(reaper, clock, LEASE - INTERVAL) == 0
    clock.now += 10  # this process itself stalled between sweeps
    assert await _sweeps(reaper, clock, LEASE - INTERVAL) == 0
    assert await _sweeps(reaper, clock, 2 * INTERVAL) == 1


async def test_no_number_of_entries_it_cannot_act_on_hides_a_run(
    reaper: Reaper, store: FakeLifecycle, clock: Clock
) -> None:
    # Deleted sessions and broken records ahead of the one run that needs a new worker.
    store.expired = {f"s_deleted_{i}": Requeue.CLEARED for i in range(3 * PAGE)}
    store.expired |= {f"s_broken_{i}": redis_errors.ResponseError("ERR user_script") for i in range(PAGE + 1)}
    store.expired["s_orphan"] = Requeue.REQUEUED
    assert await _sweeps(reaper, clock, LEASE + INTERVAL) == 1
    assert store.requeued == ["s_orphan"]
    assert all(key.startswith("s_broken") for key in store.expired)
