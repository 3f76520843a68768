"""The joiner of a worker's calls (worker/joiner.py): those made while a round trip is out go in the next."""

import asyncio

import pytest

from tokentail.worker.joiner import Joiner


class RoundTrips:
    """A `send` that holds each round trip until told, and records what each carried."""

    def __init__(self, failing: frozenset[int] = frozenset()) -> None:
        self.sent: list[list[int]] = []
        self.answer = asyncio.Event()
        self._failing = failing

    async def __call__(self, items: list[int]) -> None:
        self.sent.append(items)
        await self.answer.wait()
        self.answer.clear()
        if self._failing & set(items):
            raise ConnectionError("lost")


async def _answered(trips: RoundTrips, futures: list["asyncio.Future[None]"]) -> None:
    while not all(future.done() for future in futures):
        trips.answer.set()
        await asyncio.sleep(0)


async def test_calls_made_while_a_round_trip_is_out_go_together_in_the_next() -> None:
    trips = RoundTrips()
    joiner = Joiner(trips, most=3)
    first = joiner.submit(1)
    await asyncio.sleep(0)  # the first goes at once, alone
    later = [joiner.submit(item) for item in range(2, 7)]
    await _answered(trips, [first, *later])
    assert trips.sent == [[1], [2, 3, 4], [5, 6]]  # at most `most` in one
    await joiner.idle()


async def test_a_failed_round_trip_fails_its_own_calls_only() -> None:
    trips = RoundTrips(failing=frozenset({2}))
    joiner = Joiner(trips, most=2)
    first = joiner.submit(1)
    await asyncio.sleep(0)
    failed, other, after = joiner.submit(2), joiner.submit(3), joiner.submit(4)
    await _answered(trips, [first, failed, other, after])
    assert first.result() is None and after.result() is None
    for future in (failed, other):
        with pytest.raises(ConnectionError):
            future.result()
