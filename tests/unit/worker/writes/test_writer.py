import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
from redis import exceptions as redis_errors

from tests.support.waiting import eventually
from tokentail.shared.store.scripts.runs import Applied, AppliedSteers
from tokentail.shared.vocabulary.errors import LeaseLost
from tokentail.shared.vocabulary.events import (
    MAX_EVENT_BYTES,
    Ending,
    MessageDelta,
    ReasoningDelta,
    RunCompleted,
    Status,
    event_type_of,
)
from tokentail.shared.vocabulary.records import Steer
from tokentail.worker.agent_errors import EventTooLarge, OutputTooLarge
from tokentail.worker.writes.appends import TickGrid, tally
from tokentail.worker.writes.lost_writes import WriteJournal
from tokentail.worker.writes.run_writes import RunLease, outcome
from tokentail.worker.writes.steer_inbox import SteerInbox
from tokentail.worker.writes.writer import MAX_DELTA_CHARS, EventWriter


class RecordingLease:
    """Stands in for a run's RunLease: records each append call, optionally slowly or failing."""

    session_id = "s"
    run_id = "r"

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[tuple[str, str]]] = []
        self.delay = delay
        self.gate: asyncio.Event | None = None
        self.fail = False
        self.steps: dict[str, str] = {}  # recorded by RunContext.step
        # Appends and steps in the order they landed: ("events", [(type, data)]) or ("step", (key, value)).
        self.landed: list[tuple[str, Any]] = []
        self.inbox = SteerInbox()
        self.journal = WriteJournal()  # as a RunLease's: what the writer was told it wrote
        self.steers: list[str] = []  # steers sent to the run and not taken in yet (their inputs)

    def steer(self, text: str) -> None:
        """A steer sent to the run: kept, and its worker told."""
        self.steers.append(text)
        self.inbox.sent.set()

    async def steers_wait(self) -> bool:
        """As RunLease's: `inbox.sent` set only while steers wait."""
        if not self.steers:
            self.inbox.sent.clear()
        return bool(self.steers)

    async def apply_steers(self, step_key: str, output_at: int) -> AppliedSteers:
        self.inbox.sent.clear()
        if not self.steers:
            return AppliedSteers(Applied.NONE)
        records = [Steer(steer_id=f"st_{n}", run_id=self.run_id, input=text) for n, text in enumerate(self.steers)]
        taken = json.dumps([record.model_dump() for record in records])
        self.steers = []
        await self.record_step(step_key, taken)
        applied = [("steer.applied", json.dumps({"run_id": self.run_id, "steer_id": r.steer_id})) for r in records]
        self.calls.append(applied)
        return AppliedSteers(Applied.APPLIED, len(self.calls), taken.encode())

    async def append(
        self,
        events: Sequence[tuple[str, str]],
        append_id: str | None = None,
        ending: Ending | None = None,
    ) -> int:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise LeaseLost("fenced")
        self.calls.append(list(events) + ([(event_type_of(ending), ending.model_dump_json())] if ending else []))
        self.landed.append(("events", self.calls[-1]))
        return len(self.calls)

    async def record_step(self, key: str, value_json: str) -> None:
        if self.fail:
            raise LeaseLost("fenced")
        self.steps[key] = value_json
        self.landed.append(("step", (key, value_json)))

    async def record_usage(self, attempt: int, usage: dict[str, int]) -> None:
        self.landed.append(("usage", (attempt, usage)))

    @property
    def events(self) -> list[tuple[str, dict[str, object]]]:
        return [(kind, json.loads(data)) for call in self.calls for kind, data in call]

    def texts(self) -> list[str]:
        return [str(data["text"]) for kind, data in self.events if kind == "message.delta"]


async def _append_landed(store: RecordingLease, calls: int) -> None:
    for _ in range(1000):
        if len(store.calls) >= calls:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"expected {calls} appends, saw {len(store.calls)}")


async def _arrive(writer: EventWriter, *tokens: str) -> None:
    """Each token in a loop step of its own, as tokens that come apart do (one network read each)."""
    for token in tokens:
        await writer.delta(token)
        await asyncio.sleep(0)


class LeaseTicks(TickGrid):
    """worker/writes/appends.py's grid, a round trip's appends each sent through its writer's lease (a test's
    RecordingLease), all settled together once all landed, as AppendTicks settles a round trip: the
    writer's side of the per-token path, without Redis."""

    def _send(self) -> None:
        ready, self._ready = self._ready, []
        sends = [(writer, events) for writer in ready if (events := writer.take()) is not None]
        if not sends:
            self._sending = False
            return
        sent = asyncio.gather(*(writer.lease.append(events) for writer, events in sends), return_exceptions=True)

        def settle(done: "asyncio.Future[list[Any]]") -> None:
            replies = outcome(done)
            for (writer, _), reply in zip(
                sends, [replies] * len(sends) if isinstance(replies, BaseException) else replies, strict=True
            ):
                writer.landed(reply)
            tally.flush()
            self._sent()

        sent.add_done_callback(settle)


def _writer(store: RecordingLease, window: float) -> EventWriter:
    fake: RunLease = store  # type: ignore[assignment]
    return EventWriter(fake, LeaseTicks(window), max_output_chars=1_000_000)


async def test_without_a_window_every_token_is_its_own_delta() -> None:
    store = RecordingLease()
    writer = _writer(store, 0)
    for token in ["a", "b", "c"]:
        await writer.delta(token)
        await writer.flush()  # let the append in flight land, as Redis does between paced tokens
    assert store.texts() == ["a", "b", "c"]
    assert writer.events_appended == 3


async def test_tokens_arriving_during_an_append_join_the_next_one() -> None:
    store = RecordingLease(delay=0.01)
    writer = _writer(store, 0)
    await _arrive(writer, "a", "b", "c")
    await writer.flush()
    assert store.texts() == ["a", "bc"]


async def test_first_token_goes_at_once_and_the_rest_wait_for_the_window() -> None:
    store = RecordingLease()
    writer = _writer(store, 60.0)
    await _arrive(writer, "Hello", ",", " world")
    await _append_landed(store, 1)
    assert store.texts() == ["Hello"]  # the rest is held by the window
    await writer.emit(Status(run_id="r", text="done"))  # any other event flushes the text before it
    assert store.texts() == ["Hello", ", world"]
    assert store.events[-1] == ("status", {"run_id": "r", "text": "done"})


async def test_tokens_that_arrive_together_go_together_rather_than_the_first_alone() -> None:
    # Tokens of one network read (or of one tick of the scripted model) come in one loop step. Had
    # the first gone alone, the rest would have waited a whole window: about 50 ms more per token.
    store = RecordingLease()
    writer = _writer(store, 60.0)
    for token in ["Hello", ",", " world"]:
        await writer.delta(token)
    await _append_landed(store, 1)
    assert store.texts() == ["Hello, world"]


async def test_the_window_timer_flushes_when_no_more_tokens_come() -> None:
    store = RecordingLease()
    writer = _writer(store, 0.02)
    await _arrive(writer, "a", "b", "c")
    await _append_landed(store, 2)  # no further call: the timer alone must flush
    assert store.texts() == ["a", "bc"]


async def test_tokens_that_come_while_an_append_is_in_flight_follow_it_in_order() -> None:
    store = RecordingLease()
    store.gate = asyncio.Event()  # the first append waits, as on a slow Redis
    writer = _writer(store, 0.003)
    tokens = [f"t{i} " for i in range(60)]
    await _arrive(writer, *tokens)
    store.gate.set()
    await writer.flush()
    assert store.texts() == [tokens[0], "".join(tokens[1:])]


async def test_usage_is_recorded_after_text_another_task_is_appending() -> None:
    """A usage report's record says which text it covers (the run's last id then): recorded while the
    agent's own append of that text was on its way, it covered less, and a takeover estimated (so
    billed twice) the text that had been reported."""
    store = RecordingLease()
    writer = _writer(store, 60.0)
    await writer.delta("Let me")
    await writer.flush()
    await writer.delta(" calculate.")  # held by the window
    store.gate = asyncio.Event()  # Redis holds the next append
    emitting = asyncio.create_task(writer.emit(Status(run_id="r", text="calling")))  # flushes the text first
    await eventually(lambda: writer._lock.locked())
    recording = asyncio.create_task(writer.record_usage(1, lambda: {"output_tokens": 3}))
    await asyncio.sleep(0.01)
    assert not recording.done()  # it waits for the text on its way
    store.gate.set()
    await asyncio.gather(emitting, recording)
    assert [kind for kind, _ in store.landed] == ["events", "events", "usage", "events"]
    assert store.landed[1][1] == [("message.delta", '{"run_id":"r","text":" calculate."}')]


async def test_a_failed_background_flush_surfaces_on_the_next_call() -> None:
    store = RecordingLease()
    writer = _writer(store, 0.01)
    await writer.delta("a")
    store.fail = True
    await writer.delta("b")  # buffered; its timer flush will fail

    async def surfaced() -> bool:
        try:
            await writer.delta("c")
        except LeaseLost:
            return True
        return False

    assert await eventually(surfaced, within=1)


async def test_close_drops_a_pending_timer() -> None:
    store = RecordingLease()
    writer = _writer(store, 0.01)
    await _arrive(writer, "a", "b")
    writer.close()
    await asyncio.sleep(0.05)
    assert store.texts() == ["a"]


class FlakyStore(RecordingLease):
    """Fails its first `failures` appends with `error`."""

    def __init__(self, error: Exception, failures: int = 2) -> None:
        super().__init__()
        self.error, self.failures = error, failures
        self.ids: list[str | None] = []

    async def append(
        self,
        events: Sequence[tuple[str, str]],
        append_id: str | None = None,
        ending: Ending | None = None,
    ) -> int:
        self.ids.append(append_id)
        if self.failures:
            self.failures -= 1
            raise self.error
        return await super().append(events, ending=ending)


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.ConnectionError("connection reset"),
        redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        redis_errors.ReadOnlyError("You can't write against a read only replica."),
        redis_errors.ResponseError("BUSY Redis is busy running a script."),
    ],
    ids=["unreachable", "full", "read-only", "busy"],
)
async def test_a_background_append_that_met_an_outage_goes_again_through_the_lease(error: Exception) -> None:
    # The tick's try failed; the lease's append (which rides the outage out: test_run_writes.py, and finds
    # a try that went through: test_appends.py) goes next.
    store = FlakyStore(error, failures=1)
    writer = _writer(store, 0)
    await writer.delta("kept")
    await writer.finish(RunCompleted(run_id="r", output="kept", usage={}))
    assert [kind for kind, _ in store.events] == ["message.delta", "run.completed"]
    assert len(store.ids) == 3  # the delta's two tries, then the end


async def test_a_redis_error_that_is_no_outage_is_not_retried() -> None:
    store = FlakyStore(redis_errors.ResponseError("ERR user_script:12: Script attempted to access nonexistent global"))
    writer = _writer(store, 0)
    with pytest.raises(redis_errors.ResponseError):
        await writer.finish(RunCompleted(run_id="r", output="", usage={}))
    assert len(store.ids) == 1


async def test_finish_gives_up_on_a_lost_lease_at_once() -> None:
    store = RecordingLease()
    store.fail = True
    with pytest.raises(LeaseLost):
        await _writer(store, 0).finish(RunCompleted(run_id="r", output="", usage={}))


async def test_a_long_text_is_stored_as_several_bounded_deltas() -> None:
    store = RecordingLease(delay=0.01)
    writer = _writer(store, 0)
    await _arrive(writer, "x", "é" * (2 * MAX_DELTA_CHARS + 5))  # "x" in flight while the rest piles up
    await writer.flush()
    assert [len(text) for text in store.texts()] == [1, MAX_DELTA_CHARS, MAX_DELTA_CHARS, 5]


async def test_an_answer_past_the_output_bound_fails_the_run() -> None:
    store = RecordingLease()
    writer = EventWriter(store, LeaseTicks(0), max_output_chars=10)  # type: ignore[arg-type]
    await writer.delta("0123456789")
    with pytest.raises(OutputTooLarge):
        await writer.delta("!")


async def test_an_event_past_the_event_bound_is_refused() -> None:
    store = RecordingLease()
    with pytest.raises(EventTooLarge):
        await _writer(store, 0).emit(Status(run_id="r", text="x" * MAX_EVENT_BYTES))
    assert store.calls == []


async def test_writers_whose_windows_close_together_append_at_one_tick_not_a_timer_each() -> None:
    ticks = LeaseTicks(0.05, period=0.2)
    fired: list[int] = []  # writers due at each tick
    tick = ticks._tick

    def counted(at: int) -> None:
        fired.append(len(ticks._due[at]))
        tick(at)

    ticks._tick = counted  # type: ignore[method-assign,assignment]
    stores = [RecordingLease() for _ in range(10)]
    writers = [EventWriter(store, ticks, max_output_chars=1_000) for store in stores]  # type: ignore[arg-type]
    for writer in writers:
        await _arrive(writer, "first")  # appended at once: nothing was held before it
    for writer in writers:
        await _arrive(writer, " more")  # their windows close within a few ms of each other
    for store in stores:
        await _append_landed(store, 2)
    assert [store.texts() for store in stores] == [["first", " more"]] * 10
    assert sum(fired) == 10 and len(fired) <= 2  # one tick for all (two if a grid line fell between)


class _Due:
    """A writer as the ticks see one: it notes that its tick came."""

    def __init__(self, came: list["_Due"]) -> None:
        self._came = came

    def on_tick(self) -> bool:
        self._came.append(self)
        return False


async def test_a_busy_process_joins_every_other_tick_until_a_tick_is_quiet_again() -> None:
    ticks = TickGrid(0.05, period=0.1)
    came: list[_Due] = []
    loop = asyncio.get_running_loop()

    async def tick_of(writers: int) -> None:  # a tick that calls `writers` writers
        came.clear()
        # All due at one instant, mid-way between two lines of the grid, however long the joins take
        # on a busy box (joined with no wait, a line crossed meanwhile split them over two ticks).
        due = (math.floor(loop.time() / ticks.period) + 2.5) * ticks.period
        for _ in range(writers):
            ticks.join(_Due(came), due - loop.time())  # type: ignore[arg-type]
        await eventually(lambda: len(came) == writers)

    def joined() -> set[int]:  # the parities of ticks joined a period apart, far off: none comes in the test
        far = (math.floor(loop.time() / ticks.period) + 36_000.5) * ticks.period
        return {ticks.join(_Due([]), far + ticks.period * step - loop.time()) % 2 for step in range(4)}  # type: ignore[arg-type]

    assert joined() == {0, 1}  # every tick of the grid
    await tick_of(TickGrid.BUSY)
    assert joined() == {0}  # busy: every other tick, twice the writers each
    await tick_of(TickGrid.BUSY - 1)
    assert joined() == {0, 1}


async def test_a_background_append_whose_lease_gave_up_fails_the_run_s_next_call() -> None:
    store = FlakyStore(redis_errors.ConnectionError("connection refused"), failures=10**9)
    writer = _writer(store, 0)
    await writer.delta("lost")
    with pytest.raises(redis_errors.ConnectionError):
        for _ in range(100):  # the failure surfaces on a call once the lease's append gave up
            await asyncio.sleep(0.05)
            await writer.flush()
    assert len(store.ids) == 2  # the tick's try, then the lease's (which gave up)


async def test_text_that_keeps_coming_past_its_window_waits_for_the_tick_not_alone() -> None:
    # A model whose chunks come about a window apart (the scripted model's ticks) would otherwise
    # append each run at a moment of its own: as many round trips as runs, not one per tick.
    # The writer's own clock is the test's: a busy machine's late wake-up is no quiet spell.
    ticks = LeaseTicks(0.02, period=3600)  # a tick that never comes within the test
    store = RecordingLease()
    now = [0.0]
    writer = EventWriter(store, ticks, max_output_chars=1_000, clock=lambda: now[0])  # type: ignore[arg-type]
    await _arrive(writer, "first")
    await _append_landed(store, 1)
    now[0] += 0.025  # just past the window
    await _arrive(writer, " second")
    await asyncio.sleep(0.01)
    assert store.texts() == ["first"]  # held for the tick
    await writer.flush()
    now[0] += 0.05  # a quiet spell: two windows and more without an append
    await _arrive(writer, " third")
    await _append_landed(store, 3)
    assert store.texts() == ["first", " second", " third"]  # at once, without waiting for a tick


@pytest.mark.parametrize("agent", [None, "researcher"])
async def test_deltas_are_stored_as_their_models_write_them(agent: str | None) -> None:
    # The writer splices the text into a head made once per kind and agent: the bytes must be the model's.
    store = RecordingLease()
    writer = _writer(store, 0)
    text = 'quote " backslash \\ newline \n control \x01 slash / é 😀 \u2028'
    await writer.delta(text, agent)
    await writer.reasoning(text, agent)
    await writer.flush()
    stored = [data for call in store.calls for _, data in call]
    assert stored == [
        MessageDelta(run_id="r", text=text, agent=agent).model_dump_json(),
        ReasoningDelta(run_id="r", text=text, agent=agent).model_dump_json(),
    ]
