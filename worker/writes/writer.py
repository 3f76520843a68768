"""The event writer of one run attempt: coalesces token deltas and keeps appends in order.

A token that arrives after a quiet spell (two windows without an append) is appended at once (the
first token is never held), with those that arrive together with it (in the same loop step: one
network read); tokens that follow within `flush_interval` of the last append are joined into one
`message.delta` when the window closes. Windows close on one grid of ticks for every writer of the
process (worker/writes/appends.py `AppendTicks`): the runs whose windows close together append at the same
tick, which the worker sends to Redis as one round trip and one script call. Text that keeps coming
just after its window closed (a model whose chunks come about a window apart) waits for the next tick
too, at most its `period`: appended at once, each run would go at a moment of its own, and the worker
would send twice as many round trips, each carrying half as many runs. Appends run in the
background, one at a time, so the model's stream never waits on Redis: tokens that arrive while an
append is in flight join the next one, which batches harder exactly when Redis or the network is
slow. `delta` only adds the text to the run's buffer: the tick takes it (`take`) and tells the writer
what became of it (`landed`), with no future, task or lock per append; an append something waits for
(`flush`, `emit`) makes one future. Any other event first flushes the pending text, so the stream
keeps the order in which the agent produced it.

What one run may store is bounded: a delta holds at most `MAX_DELTA_CHARS` (a longer text becomes
several), any other event at most `MAX_EVENT_BYTES`, and an attempt's text `max_output_chars`; past
the last two, the run fails with `output_too_large` or `event_too_large`. Readers can then hold a
bounded amount of a session in memory, however long it is.

An attempt that goes on from its run's record (a takeover, an answer: worker/run/recovery/) streams
again some of what the record holds. All the writer knows of that is `recorded`, which it asks of
each event what the record holds of it, and it appends only the rest; its `text` is then the
answer this attempt added.
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pydantic_core import to_json

from tokentail.shared.connections.outage import is_outage
from tokentail.shared.plumbing import tracing
from tokentail.shared.vocabulary.errors import WritesLost
from tokentail.shared.vocabulary.events import (
    DATA_PREFIX,
    MAX_EVENT_BYTES,
    TERMINAL_EVENTS,
    Ending,
    EventData,
    EventType,
    MessageDelta,
    ReasoningDelta,
    RunCompleted,
    ToolCompleted,
    ToolFailed,
    event_type_of,
)
from tokentail.worker import metrics
from tokentail.worker.agent_errors import EventTooLarge, OutputTooLarge
from tokentail.worker.writes.appends import Events, TickGrid, tally
from tokentail.worker.writes.run_writes import RunLease, call_when_landed

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_DELTA_CHARS = 16_384
_DELTAS = metrics.EVENTS_APPENDED.labels("message.delta")  # the one appended most often
_EMPTY_TEXT = '""}'
# The text a writer coalesces: the answer, and reasoning kept apart from it.
_TEXT_EVENTS: dict[type[MessageDelta | ReasoningDelta], str] = {
    MessageDelta: EventType.MESSAGE_DELTA,
    ReasoningDelta: EventType.REASONING_DELTA,
}


def is_answer(event_type: str) -> bool:
    """Whether an event shows the run's answer, or part of it: its text, a tool call, a data event
    (not a status or reasoning, which say how the agent gets there)."""
    return event_type == EventType.MESSAGE_DELTA or event_type.startswith(("tool.", DATA_PREFIX))


class Recorded(Protocol):
    """What the run's record holds of what this attempt streams again (worker/run/recovery/replay.py)."""

    def new_text(self, event_type: str, text: str, run: str | None = None) -> str:
        """The part of `text` (of a text or reasoning delta; `run`: an inline child's) past what the record holds."""
        ...

    def holds(self, event_type: str, data: EventData) -> bool:
        """Whether the record holds this event already."""
        ...


def delta_head(run_id: str, model: type[MessageDelta | ReasoningDelta], agent: str | None) -> tuple[str, str]:
    """A text delta's event type, and its JSON up to the text (`{"run_id":…,"text":`), as its model
    writes it: a delta is that head, its text as pydantic writes a string, and `}`, the same bytes as
    the model's, without a model per append. Made once per kind and streamer."""
    empty = model(run_id=run_id, text="", agent=agent).model_dump_json()  # checks `agent` too
    assert empty.endswith(_EMPTY_TEXT)  # `text` is the model's last field
    return _TEXT_EVENTS[model], empty[: -len(_EMPTY_TEXT)]


def deltas(event_type: str, head: str, text: str) -> list[tuple[str, str]]:
    """A run's text as text deltas of at most `MAX_DELTA_CHARS` each, their JSON `head` + text + `}`."""
    if len(text) <= MAX_DELTA_CHARS:
        return [(event_type, head + to_json(text).decode() + "}")]
    return [
        (event_type, head + to_json(text[i : i + MAX_DELTA_CHARS]).decode() + "}")
        for i in range(0, len(text), MAX_DELTA_CHARS)
    ]


def _first_text(provider: str, waited: float, traced: Callable[[float], None] | None) -> None:
    """An attempt's first answer text came, `waited` seconds after its start (once per attempt)."""
    if traced is None:
        metrics.TIME_TO_FIRST_TOKEN.labels(provider).observe(waited)
        return
    metrics.TIME_TO_FIRST_TOKEN.labels(provider).observe(waited, tracing.exemplar())  # the trace, to find it
    traced(waited)


# A text delta's model, and who streams it: the agent (see AgentEventData) of the writer's own run, or
# (run id, agent) of an inline child (worker/run/children.py), whose text its parent's writer appends.
# One slot for both: the own run's per-token path compares what it always did.
TextModel = type[MessageDelta | ReasoningDelta]
Streamer = str | None | tuple[str, str | None]
Kind = tuple[TextModel, Streamer]


PREVIEW_CHARS = 4096  # of a tool result too large for the stream


def tool_end(
    run_id: str,
    call_id: str,
    result: Any,
    error: str | BaseException | None,
    denied: bool,
    agent: str | None,
    duration_ms: int,
) -> ToolCompleted | ToolFailed:
    """A tool call's end as the stream shows it, a run's or an inline child's (the one rule of both)."""
    if error is None:
        completed = ToolCompleted(run_id=run_id, call_id=call_id, result=result, duration_ms=duration_ms, agent=agent)
        if len(whole := completed.model_dump_json().encode()) > MAX_EVENT_BYTES:
            # The model gets the whole result; the stream shows its beginning.
            preview = json.dumps(result, ensure_ascii=False, default=str)[:PREVIEW_CHARS]
            completed.result = f"{preview}… (truncated: {len(whole)} bytes)"
        return completed
    error = error_text(error)
    return ToolFailed(run_id=run_id, call_id=call_id, error=error, duration_ms=duration_ms, denied=denied, agent=agent)


def error_text(error: str | BaseException) -> str:
    """What the stream says of an error (a tool call's, an inline child's): a cancelled run (or a
    stopping worker) ends its calls and children too, and says so."""
    if isinstance(error, str):
        return error
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return str(error)[:PREVIEW_CHARS] or type(error).__name__


class PendingText:
    """The text a writer holds until its next append: of one kind (answer or reasoning) and one streamer
    (an agent of the run, or an inline child's), made text deltas when taken, their JSON head written once per kind."""

    __slots__ = ("parts", "kind", "_run_id", "_head_kind", "_head")

    def __init__(self, run_id: str) -> None:
        self.parts: list[str] = []
        self.kind: Kind = (MessageDelta, None)
        self._run_id = run_id
        self._head_kind: Kind | None = None
        self._head = ("", "")  # its event type and JSON head (see delta_head)

    def other_than(self, model: TextModel, agent: Streamer) -> bool:
        """Whether text of another kind waits (appended before this text)."""
        return bool(self.parts) and (self.kind[0] is not model or self.kind[1] != agent)

    def add(self, kind: Kind, text: str) -> None:
        """Text of `kind` (the run's own per-token path adds its text itself)."""
        if not self.parts:
            self.kind = kind
        self.parts.append(text)

    def take(self) -> list[tuple[str, str]]:
        text = "".join(self.parts)
        self.parts.clear()
        if self._head_kind != self.kind:
            model, streamer = self._head_kind = self.kind
            run, agent = streamer if isinstance(streamer, tuple) else (self._run_id, streamer)
            self._head = delta_head(run, model, agent)
        return deltas(*self._head, text)


class _Background:
    """A writer's append on its way (asked of the ticks, or sent), what it sends, and a wait for it to
    land that costs a future only when something waits (flush, emit, finish)."""

    __slots__ = ("on", "events", "awaited", "retried", "_waiter")

    def __init__(self) -> None:
        self.on = False
        self.events: Events = []  # set before it is sent only for an awaited append (`_write`)
        self.awaited = False  # `_write`'s, under the writer's lock: what waits for it queues on the lock
        self.retried = False  # it is being sent again, through an outage or past lost events
        self._waiter: asyncio.Future[None] | None = None

    def done(self) -> None:
        self.on, self.events, self.awaited, self.retried = False, [], False, False
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.set_result(None)

    async def landed(self) -> None:
        """Until the background append on its way landed (not `_write`'s: the lock orders those)."""
        while self.on and not self.awaited:
            await self.settled()

    async def settled(self) -> None:
        """Until the append on its way landed, whichever it is."""
        if self.on:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait([self._waiter])  # not cancelled with the task that waits

    def send_again(self, lease: RunLease, landed: Callable[[int | BaseException], None]) -> None:
        """Through the lease, in a task: Redis was out of reach, or lost events the run wrote before. The
        lease's append rides the outage out, appends lost events again first, and finds a try whose
        reply was lost rather than append it twice; its error, if it gives up, is the run's failure."""
        self.retried = True
        call_when_landed(asyncio.ensure_future(lease.append(self.events)), landed)


class EventWriter:
    def __init__(
        self,
        lease: RunLease,
        ticks: TickGrid,
        max_output_chars: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease  # (its attempt takes steers in through it: worker/run/attempt.py)
        self._run_id = lease.run_id
        self._ticks = ticks
        self._flush_interval = ticks.interval
        self.max_output_chars = max_output_chars
        self._output_chars = 0
        self._clock = clock
        self._text_waiting = PendingText(lease.run_id)
        self._pending = self._text_waiting.parts  # (read per token: one lookup less)
        self._last_flush = float("-inf")
        self._ticking = False  # waiting for the next tick
        self._window_end: float | None = None  # when the window it waits for closes
        self._background = _Background()
        self._failure: BaseException | None = None
        self._closed = False
        self._stopped = False  # see stop()
        # One append in flight at a time, in the order asked (asyncio.Lock is FIFO): the order of the
        # stream, the idempotency of a retried append, and the last id a record (usage, step) notes.
        self._lock = asyncio.Lock()
        self.text_parts: list[str] = []  # the answer text this attempt streamed (past the record)
        self.recorded: Recorded | None = None  # a run that goes on: what its record holds is not appended again
        self._answering = False  # this attempt streamed answer text
        self.answered = False  # this attempt showed something as the run's answer: text, a tool call, data
        self.events_appended = 0
        self.parent_run_id: str | None = None  # a child run's parent, which its terminal event names
        self.provider = "custom"  # the metrics label of what produces the text; set once it is known
        self.first_text: Callable[[float], None] | None = None  # traced: told when the first answer text came
        self._tokens = metrics.TOKENS.labels(self.provider)
        self._tokens_seen = 0  # not yet added to `_tokens`: counted per append, not per token
        self._started = clock()

    async def delta(self, text: str, agent: str | None = None) -> None:
        """Answer text, coalesced into `message.delta` events: this attempt's part of the run's output.
        Nothing is awaited unless text of another kind is pending (the per-token path)."""
        if self._pending and self._text_waiting.other_than(MessageDelta, agent):
            await self._flush_other_kind()
        self._text(MessageDelta, text, agent)

    async def reasoning(self, text: str, agent: str | None = None) -> None:
        """Reasoning text, coalesced into `reasoning.delta` events, never part of the output."""
        if self._pending and self._text_waiting.other_than(ReasoningDelta, agent):
            await self._flush_other_kind()
        self._text(ReasoningDelta, text, agent)

    async def child_text(self, run: str, kind: TextModel, text: str, agent: str | None) -> None:
        """Inline child `run`'s text (its bound is its own): coalesced apart from this run's, never its answer."""
        if self._pending and self._text_waiting.other_than(kind, (run, agent)):
            await self._flush_other_kind()
        self._check_open()
        if text := text if self.recorded is None else self.recorded.new_text(_TEXT_EVENTS[kind], text, run):
            self._text_waiting.add((kind, (run, agent)), text)
            self._schedule()

    async def _flush_other_kind(self) -> None:
        self._check_open()  # (text of another kind, or of another agent, is appended before what follows)
        await self.flush()

    def _check_open(self) -> None:
        if self._stopped:
            raise asyncio.CancelledError(f"run {self._run_id} was stopped")
        if self._failure is not None:
            raise self._failure

    def _text(self, kind: type[MessageDelta | ReasoningDelta], text: str, agent: str | None) -> None:
        self._check_open()
        if self.recorded is not None:
            text = self.recorded.new_text(_TEXT_EVENTS[kind], text)
        if not text:
            return
        if not self._pending:
            self._text_waiting.kind = (kind, agent)
        self._output_chars += len(text)
        if self._output_chars > self.max_output_chars:
            raise OutputTooLarge(f"the run's text exceeded {self.max_output_chars} characters")
        if kind is MessageDelta:
            self.answered = True
            if not self._answering:
                self._answering = True
                _first_text(self.provider, self._clock() - self._started, self.first_text)
                self._tokens = metrics.TOKENS.labels(self.provider)  # per token: looked up once
            self._tokens_seen += 1
            self.text_parts.append(text)
        self._pending.append(text)
        if not (self._ticking or self._background.on):  # else the tick or the append on its way takes it
            self._schedule()

    async def emit(self, data: EventData) -> None:
        """Append any other event, after the text that came before it (a terminal one: `finish`)."""
        event_type = event_type_of(data)
        if (own := data.run_id == self._run_id) and event_type in TERMINAL_EVENTS:  # (not an inline child's)
            raise TypeError(f"{event_type} ends the run: use finish()")
        if self._stopped and not isinstance(data, ToolCompleted | ToolFailed | Ending):  # open calls still end
            raise asyncio.CancelledError(f"run {self._run_id} was stopped")
        self.answered = self.answered or (own and is_answer(event_type))
        if self.recorded is not None and self.recorded.holds(event_type, data):
            return
        stored = data.model_dump_json()
        if (size := len(stored.encode())) > MAX_EVENT_BYTES:
            raise EventTooLarge(f"a {event_type} event of {size} bytes exceeds {MAX_EVENT_BYTES}")
        await self.flush()
        await self._write([(event_type, stored)])

    async def record_usage(self, attempt: int, take_usage: Callable[[], dict[str, int] | None]) -> None:
        """Record an attempt's usage with the run, after the text streamed before it (worker/run/usage.py)."""
        await self.flush()
        async with self._lock:  # after an append another task has on its way: the text it reports
            if (usage := take_usage()) is not None:  # taken now: the latest, unless the run's end took it
                await self.lease.record_usage(attempt, usage)

    async def in_order(self, write: Callable[[], Awaitable[T]]) -> T:
        """`write()` (a step recorded, steers taken in) after the text before it and the appends on their way."""
        await self.flush()
        async with self._lock:
            return await write()

    async def flush(self) -> None:
        """Append the pending text now, after any append in flight."""
        await self._background.landed()
        self._ticking = False  # the tick it joined passes it by
        if self._failure is not None:
            raise self._failure
        if self._pending:
            await self._write(self._take_pending())

    async def finish(self, ending: Ending) -> None:
        """Write the run's terminal event, even after an append failed: a run must always end. A completed
        run's text not yet appended goes with it, in one call; any other drops it (its end says why)."""
        self.close()
        ending.parent_run_id = self.parent_run_id
        await self._background.landed()
        completed = isinstance(ending, RunCompleted) and self._pending and self._failure is None
        text = self._take_pending() if completed else []
        self._pending.clear()
        self._failure = None
        await self._write(text, ending)

    def stop(self) -> None:
        """The run was stopped and its task cancelled: should the agent's code have swallowed the cancel
        (Python 3.11's `asyncio.wait_for` can: cpython gh-86296), its next text or event (but an end) raises."""
        self._stopped = True

    def close(self) -> None:
        """Stop flushing: the run ended, and text still pending is not written."""
        self._closed = True
        self._ticking = False  # the tick it joined passes it by
        self._count_tokens()
        tally.flush()

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def _schedule(self) -> None:
        if self._ticking or self._background.on or self._closed:
            return  # the tick or the append in flight will pick the text up
        now = self._clock()
        window_end = self._last_flush + self._flush_interval
        if now - self._last_flush >= 2 * self._flush_interval:
            # After a quiet spell (the first token too): not held, but appended once this loop step is over:
            # tokens that arrive together (one network read) go together, not the first alone.
            if not self._lock.locked():  # else `_write`'s end schedules it, after its append
                self._background.on = True
                self._ticks.soon(self)
        else:
            # Within the window, or just past it while the text still flows (a model whose chunks
            # come about a window apart, as the scripted model's ticks do): at the window's tick,
            # with the other writers whose windows close then, not alone at a moment of its own.
            self._ticking = True
            self._window_end = max(now, window_end)
            self._ticks.join(self, self._window_end - now)

    def on_tick(self) -> bool:
        """The tick it joined: whether it has text to append now (then `take` follows)."""
        if not self._ticking:
            return False  # flushed meanwhile
        self._ticking = False
        if not self._pending or self._background.on or self._closed or self._lock.locked():
            return False  # (an append of `_write` is on its way: its end schedules the text)
        self._background.on = True
        return True

    def take(self) -> Events | None:
        """What its append on its way sends (called once by the ticks, as they send it): an awaited
        append's events, else the pending text; None when nothing is left to send."""
        background = self._background
        if not background.events:
            if not self._pending:
                background.done()
                return None
            background.events = self._take_pending()
        return background.events

    def landed(self, reply: int | BaseException) -> None:
        """What became of its append: the seq of its last event, or its error."""
        background = self._background
        if type(reply) is int:
            if not background.retried:  # (the lease's append noted its own)
                self.lease.journal.wrote(background.events, reply)
            self.events_appended += _counted(background.events)
        else:
            assert isinstance(reply, BaseException)
            if (is_outage(reply) or isinstance(reply, WritesLost)) and not background.retried:
                background.send_again(self.lease, self.landed)
                return
            self._failure = reply  # surfaces on the run's next call, which owns error handling
        background.done()
        if self._pending and self._failure is None and not self._lock.locked():
            self._schedule()

    def _take_pending(self) -> list[tuple[str, str]]:
        self._count_tokens()
        # A window that closed late (at its tick, after an append in flight) counts from when it should
        # have closed: the next window is not pushed later each time, holding text longer and longer.
        now = self._clock()
        self._last_flush = now if self._window_end is None else min(now, self._window_end)
        self._window_end = None
        return self._text_waiting.take()

    async def _write(self, events: list[tuple[str, str]], ending: Ending | None = None) -> None:
        async with self._lock:
            if ending is None:  # with the tick's other appends, this loop step
                background = self._background
                await background.landed()  # one that began before the lock was taken
                background.on, background.events, background.awaited = True, events, True
                self._ticks.soon(self)
                await background.settled()
                if self._failure is not None:
                    raise self._failure
            else:
                # Through an outage, the lease's append keeps trying with the same id, so a try whose
                # reply was lost is not appended twice. The lease bounds it: if a reaper gave the run to
                # another worker meanwhile, the retry is fenced.
                await self.lease.append(events, ending=ending)
                self.events_appended += _counted([*events, (event_type_of(ending), "")])
                tally.flush()
        if self._pending:
            self._schedule()  # text that came meanwhile, which no background append could take

    def _count_tokens(self) -> None:
        if self._tokens_seen:
            tally.add(self._tokens, self._tokens_seen)
            self._tokens_seen = 0


def _counted(events: Events) -> int:
    """Count appended events in the metrics (in the tally: added up once per round trip); how many."""
    if events[0][0] == EventType.MESSAGE_DELTA and len(events) == 1:  # an append of the per-token path
        tally.add(_DELTAS, 1)
        return 1
    for event_type, _ in events:  # the agents' own `data.<name>` events count as one label: names are unbounded
        label = "data" if event_type.startswith(DATA_PREFIX) else event_type
        tally.add(_DELTAS if event_type == EventType.MESSAGE_DELTA else metrics.EVENTS_APPENDED.labels(label), 1)
    return len(events)
