"""A run's events as its clients keep them: the record a taken-over or resumed run goes on from.

What a takeover drops is decided here, once (`drop_point`, `dropped_by`), for both sides: a
`run.retrying` drops everything the run streamed before it, its questions and the steers it took in
too (the run started over, and takes them in again); a `run.continued` drops the run's agent events
after its `from_event_id` (a model turn cut by a crash, whose provider cannot continue it), and so
does a fork's `run.started` (`reason: "fork"`: a fork inside a run goes on from its `from_event_id`,
0 when it starts over). What is
left is what every client shows (the gateway's reducer and snapshot apply the same rule:
gateway/reading/): the worker continues from it (worker/run/recovery/), and the session's partial text is
read from it (shared/store/reads.py).
"""

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tokentail.shared.vocabulary.events import (
    DATA_PREFIX,
    EventData,
    EventType,
    RunContinued,
    RunRetrying,
    RunStarted,
)

_TEXT = EventType.MESSAGE_DELTA.value
_REASONING = EventType.REASONING_DELTA.value
_STARTED = EventType.TOOL_STARTED.value
_FINISHED = (EventType.TOOL_COMPLETED.value, EventType.TOOL_FAILED.value)
# The run's lifecycle: made by the scripts, never by the agent, so never replayed.
_LIFECYCLE = frozenset(
    {
        EventType.RUN_QUEUED,
        EventType.RUN_STARTED,
        EventType.RUN_RETRYING,
        EventType.RUN_CONTINUED,
        EventType.INPUT_REQUIRED,
        EventType.INPUT_RECEIVED,
        EventType.STEER_ACCEPTED,
        EventType.STEER_FAILED,
        EventType.RUN_SPAWNED,
    }
)


# What a run's agent makes (and `data.<name>` events): what a takeover's drop takes back.
AGENT_EVENTS = frozenset(
    {
        EventType.MESSAGE_DELTA,
        EventType.REASONING_DELTA,
        EventType.STATUS,
        EventType.TOOL_STARTED,
        EventType.TOOL_COMPLETED,
        EventType.TOOL_FAILED,
    }
)
# What the run took in (its questions' answers, its steers): a start over drops them with the rest.
_TAKEN_IN = frozenset({EventType.INPUT_REQUIRED, EventType.INPUT_RECEIVED, EventType.STEER_APPLIED})
_TAKEOVER_DATA: dict[str, type[RunRetrying | RunContinued | RunStarted]] = {
    EventType.RUN_RETRYING: RunRetrying,
    EventType.RUN_CONTINUED: RunContinued,
    EventType.RUN_STARTED: RunStarted,  # (a fork's drops; any other start, nothing)
}


def drop_point(data: EventData) -> int | None:
    """The id after which a takeover event drops its run's events (0: all of them), else None."""
    if isinstance(data, RunRetrying):
        return 0
    if isinstance(data, RunContinued):
        return data.from_event_id
    if isinstance(data, RunStarted) and data.reason == "fork":
        return data.from_event_id or 0
    return None


def dropped_by(after: int, seq: int, event_type: str) -> bool:
    """Whether a drop of its run's events after `after` drops event `seq` of `event_type`."""
    agents = event_type in AGENT_EVENTS or event_type.startswith(DATA_PREFIX)
    return seq > after and (agents or (after == 0 and event_type in _TAKEN_IN))


def is_turn_boundary(event_type: str) -> bool:
    """Whether an event of a run ends a model turn: a tool's, a question's, or steers taken in. Text,
    reasoning, status and data events belong to the turn they come in; the UI encodings show each
    turn as a step."""
    return event_type.startswith(("tool.", "input.")) or event_type == EventType.STEER_APPLIED


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    seq: int
    type: str
    data: dict[str, Any]


@dataclass
class RunLog:
    """The kept events of one run, in order, and what a replay asks of them."""

    events: list[LoggedEvent] = field(default_factory=list)
    last_seq: int = 0  # the run's last event, kept or not (0: none yet)

    @classmethod
    def of(cls, run_id: str, events: Sequence[tuple[int, str, str | bytes]]) -> "RunLog":
        """The log of `run_id` from `(seq, type, data JSON)` events of its session, in order."""
        log = cls()
        for seq, event_type, raw in events:
            data = json.loads(raw)
            if data.get("run_id") != run_id:
                continue  # another run's (one queued behind this one)
            log.last_seq = seq
            if (takeover := _TAKEOVER_DATA.get(event_type)) is not None:
                if (after := drop_point(takeover.model_validate(data))) is not None:
                    log.events = [kept for kept in log.events if not dropped_by(after, kept.seq, kept.type)]
            elif event_type not in _LIFECYCLE:
                log.events.append(LoggedEvent(seq, event_type, data))
        return log

    def kept_until(self, seq: int) -> "RunLog":
        """The log as clients keep it after a `run.continued` that keeps the events up to `seq`
        (its `last_seq`)."""
        return RunLog([event for event in self.events if event.seq <= seq], seq)

    @property
    def text(self) -> str:
        return "".join(event.data["text"] for event in self.events if event.type == _TEXT)

    @property
    def reasoning_chars(self) -> int:
        return sum(len(event.data["text"]) for event in self.events if event.type == _REASONING)

    def call_ids(self, *event_types: str) -> set[str]:
        return {event.data["call_id"] for event in self.events if event.type in event_types}

    @property
    def started_calls(self) -> set[str]:
        return self.call_ids(_STARTED)

    @property
    def finished_calls(self) -> set[str]:
        return self.call_ids(*_FINISHED)

    def counts(self) -> Counter[str]:
        """How many events of each type other than text and tool events: a replay skips as many."""
        skipped = (_TEXT, _REASONING, _STARTED, *_FINISHED)
        return Counter(event.type for event in self.events if event.type not in skipped)

    def cut(self, kept_chars: int) -> tuple[int, list[LoggedEvent]]:
        """The events that end the log since its last turn boundary (a tool or question event), past
        its first `kept_chars` characters of text: the part of a model turn a crash cut. Returns the
        id just before them (the run's last id when there are none; ids have no holes), and them."""
        chars, floor = 0, -1  # floor: the last event within the kept text
        for index, event in enumerate(self.events):
            if event.type == _TEXT:
                chars += len(event.data["text"])
                if chars <= kept_chars:
                    floor = index
        start = len(self.events)
        while start - 1 > floor and not is_turn_boundary(self.events[start - 1].type):
            start -= 1
        if start == len(self.events):
            return self.last_seq, []
        return self.events[start].seq - 1, self.events[start:]
