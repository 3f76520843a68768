import asyncio

from tokentail.worker.running import RunningRuns, Stop


async def test_an_ending_attempt_does_not_unregister_a_later_attempt_of_the_same_run() -> None:
    running = RunningRuns()
    first_registered, second_registered, release_first = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def first() -> None:
        running.add("r", "s")
        first_registered.set()
        await release_first.wait()
        running.discard("r")  # attempt 1 ends after attempt 2 took over, on the same worker

    async def second() -> None:
        await first_registered.wait()
        running.add("r", "s")
        second_registered.set()
        await asyncio.sleep(10)

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await second_registered.wait()
    release_first.set()
    await tasks[0]
    assert running.cancel("r")  # still reaches attempt 2
    await asyncio.gather(tasks[1], return_exceptions=True)
    assert tasks[1].cancelled()


async def test_the_first_stop_reason_stands_and_an_unstopped_run_has_none() -> None:
    running = RunningRuns()
    registered = asyncio.Event()

    async def run() -> None:
        running.add("r", "s")
        registered.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(run())
    await registered.wait()
    assert running.stop_reason("r") is None  # what a task cancelled by arq's shutdown finds
    assert running.stop("r", Stop.LEASE_LOST)
    assert not running.cancel("r")  # a client's cancel after the lease was lost: the run is not ours
    assert running.stop_reason("r") is Stop.LEASE_LOST
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert not running.cancel("unknown")
