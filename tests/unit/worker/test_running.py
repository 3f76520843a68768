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


def test_a_run_is_sure_to_be_told_of_its_steers_only_while_the_subscription_it_started_under_holds() -> None:
    running = RunningRuns()
    before = running.told_of_steers()  # the listener is not subscribed yet
    running.hearing()
    during = running.told_of_steers()
    assert not before() and during()
    running.deaf()  # lost: steers sent meanwhile were not told
    running.hearing()  # subscribed again: from now on they are, but not those of the gap
    assert not during() and running.told_of_steers()()


async def test_a_steer_told_while_its_run_starts_reaches_it_once_it_runs() -> None:
    running = RunningRuns()
    running.expect("r")
    running.steered("r")  # told between the run's start in Redis and its registration here
    running.steered("other")  # not a run of this worker: nothing kept
    steered: list[str] = []
    running.add("r", "s", on_steer=lambda: steered.append("r"))
    assert steered == ["r"]
    running.discard("r")
    running.expect("gone")
    running.steered("gone")
    running.forget("gone")  # it did not start here: nothing kept for it
    running.add("gone", "s", on_steer=lambda: steered.append("gone"))
    assert steered == ["r"]
