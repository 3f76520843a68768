"""The joiner (shared/connections/joiner.py): calls made while a round trip is out go together in the next one."""

import asyncio

import pytest

from tokentail.shared.connections.joiner import Joiner


class Trips:
    """A round trip that answers each item with itself doubled, an error for a negative one, and
    waits until released, so that a test decides what is out when."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.released = asyncio.Event()

    async def send(self, batch: list[int]) -> list[int | BaseException]:
        self.batches.append(batch)
        await self.released.wait()
        if 0 in batch:
            raise ConnectionError("the round trip failed")
        return [ValueError(item) if item < 0 else item * 2 for item in batch]


async def test_a_call_alone_goes_at_once_and_those_made_meanwhile_go_together_next() -> None:
    trips = Trips()
    joiner: Joiner[int, int] = Joiner(trips.send)
    first = joiner.submit(1)
    await asyncio.sleep(0)
    later = [joiner.submit(item) for item in (2, 3, 4)]
    trips.released.set()
    assert await asyncio.gather(first, *later) == [2, 4, 6, 8]
    assert trips.batches == [[1], [2, 3, 4]]


async def test_an_item_that_failed_alone_fails_alone_and_a_failed_round_trip_fails_all_in_it() -> None:
    trips = Trips()
    trips.released.set()
    joiner: Joiner[int, int] = Joiner(trips.send)
    results = await asyncio.gather(*(joiner.submit(item) for item in (1, -1, 2)), return_exceptions=True)
    assert results[0] == 2 and isinstance(results[1], ValueError) and results[2] == 4
    failed = await asyncio.gather(*(joiner.submit(item) for item in (0, 5)), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in failed)
    assert await joiner.submit(6) == 12  # and the next round trip goes on


async def test_a_round_trip_takes_at_most_its_bound() -> None:
    trips = Trips()
    trips.released.set()
    joiner: Joiner[int, int] = Joiner(trips.send, most=2)
    assert await asyncio.gather(*(joiner.submit(item) for item in range(1, 6))) == [2, 4, 6, 8, 10]
    assert trips.batches == [[1, 2], [3, 4], [5]]


async def test_a_sender_cancelled_cancels_every_call_still_waiting() -> None:
    trips = Trips()
    joiner: Joiner[int, int] = Joiner(trips.send)
    out, waiting = joiner.submit(1), None
    await asyncio.sleep(0)
    waiting = joiner.submit(2)
    assert joiner._sending is not None
    joiner._sending.cancel()
    await joiner.idle()
    for future in (out, waiting):
        with pytest.raises(asyncio.CancelledError):
            await future
