"""What a client shows of a session's runs: stored events reduced to protocol-neutral operations
(gateway/reading/operations.py).

Every protocol that is not tokentail's own (the AI SDK, AG-UI, the Responses API, MCP, A2A: gateway/protocols/)
renders these operations, so the rules below are decided here once, for all of them:

- **Blocks.** Consecutive deltas of one kind (text, reasoning) are one block, opened by the first
  (its id: that event's id) and closed before anything else the run shows (a tool call, a question,
  a block of the other kind, a drop, the run's end). A status or data event does not close it.
- **What a takeover drops** (docs/api.md, *What a client keeps*). `run.retrying`: the run starts
  over, and everything it showed is dropped, what came before an answered question included (the
  new attempt streams it all again). `run.continued`: the run's events after `from_event_id` are
  dropped (text, reasoning, status, data, tool calls; never a question or its answer); with nothing
  after it, nothing is. `ContentDropped` carries what is kept, as operations to show again.
- **Resume.** A client that has the events up to `quiet_until` is owed only what follows: the
  reducer still reads the run from its start (to know what is open and what a drop keeps), and marks
  what the client has as quiet. A question whose answer is known when the stream opens (`answered`)
  does not stop a replay.

A run's content (its blocks and events since it last started over) is held while it is shown, about
the size of its answer: it is what a drop shows again.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import islice

from pydantic import ValidationError

from tokentail.gateway.reading.operations import (
    AttemptStarted,
    BlockAppended,
    BlockClosed,
    BlockKind,
    BlockOpened,
    ClosedBecause,
    ContentDropped,
    DataShown,
    Operation,
    QuestionAnswered,
    QuestionAsked,
    RunEnded,
    RunOpened,
    StatusShown,
    SteerShown,
    ToolCalled,
    ToolDenied,
    ToolFailedOp,
    ToolFinished,
)
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import (
    DATA_PREFIX,
    EVENT_DATA,
    CustomData,
    EventData,
    EventType,
    InputReceived,
    InputRequired,
    MessageDelta,
    ReasoningDelta,
    RunCancelled,
    RunCompleted,
    RunContinued,
    RunFailed,
    RunQueued,
    RunRetrying,
    RunStarted,
    Status,
    SteerAccepted,
    SteerApplied,
    SteerFailed,
    ToolCompleted,
    ToolFailed,
    ToolStarted,
)
from tokentail.shared.vocabulary.run_log import AGENT_EVENTS, drop_point, dropped_by

# -- the one rule of what a takeover drops, also used by the native snapshot (reading/snapshot.py) --

# What an agent streams: what a `run.continued` may drop. Questions and answers are the run's: it goes
# on after them. A `run.retrying` drops everything the run showed, them included.
_AGENT_TYPES = frozenset(event_type.encode() for event_type in AGENT_EVENTS)


_MODELS = {event_type.encode(): model for event_type, model in EVENT_DATA.items()}
_DELTAS: dict[bytes, BlockKind] = {b"message.delta": "text", b"reasoning.delta": "reasoning"}
_TYPE_OF = {kind: event_type for event_type, kind in _DELTAS.items()}


def split_delta(data: bytes) -> tuple[bytes, bytes]:
    """A delta's JSON as everything up to its text's opening quote, and the text as it is escaped.
    Deltas that share the first part are of the same run and agent, and their texts join as they
    are: no parsing for the deltas a worker wrote (`{"run_id":..,["agent":..,]"text":".."}`, text
    last); any other form is parsed and written that way."""
    split = data.find(b',"text":"') + 9
    if split > 8 and data.endswith(b'"}'):
        text = data[split:-2]
        if text.count(b'"') == text.count(b'\\"'):  # every quote escaped: the text is the last field
            return data[:split], text
    parsed = json.loads(data)
    text = json.dumps(parsed.pop("text"), ensure_ascii=False)[1:-1].encode()
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False)[:-1].encode() + b',"text":"', text


def _delta_text(data: bytes, head: bytes) -> str | None:
    """The text of a delta written as `{"run_id":<the run shown>,"text":"..."}` (no `agent`), else None."""
    if not data.startswith(head):
        return None
    found, text = split_delta(data)
    if found != head:
        return None  # more fields after the text: not the worker's form
    if b"\\" not in text:
        return text.decode()
    try:  # escaped characters: JSON decodes them
        decoded = json.loads(b'"' + text + b'"')
    except ValueError:
        return None
    return decoded if isinstance(decoded, str) else None


_DATA_PREFIX = DATA_PREFIX.encode()


def parse(event: StoredEvent) -> EventData | None:
    """A stored event's data as its model (None for a type this gateway does not know)."""
    model = _MODELS.get(event.type)
    if model is None:
        if not event.type.startswith(_DATA_PREFIX):
            return None
        return CustomData.model_validate({**json.loads(event.data), "name": event.type[len(_DATA_PREFIX) :].decode()})
    try:
        return model.__pydantic_validator__.validate_json(event.data)  # type: ignore[no-any-return]
    except ValidationError:  # written by a newer worker, with a field this gateway does not know
        known = {key: value for key, value in json.loads(event.data).items() if key in model.model_fields}
        return model.model_validate(known)


# -- the reducer --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Block:
    kind: BlockKind
    id: int
    pieces: list[tuple[int, str]] = field(default_factory=list)  # (event id, text)
    closed_at: int | None = None


# What a run shows besides its blocks (a drop may take it back).
Shown = (
    StatusShown | DataShown | ToolCalled | ToolFinished | ToolFailedOp | ToolDenied | QuestionAsked | QuestionAnswered
)


_EVENT_OF: dict[type, str] = {
    StatusShown: EventType.STATUS,
    DataShown: DATA_PREFIX,
    ToolCalled: EventType.TOOL_STARTED,
    ToolFinished: EventType.TOOL_COMPLETED,
    ToolFailedOp: EventType.TOOL_FAILED,
    ToolDenied: EventType.TOOL_FAILED,
    QuestionAsked: EventType.INPUT_REQUIRED,
    QuestionAnswered: EventType.INPUT_RECEIVED,
}


def _dropped(item: "_Block | Shown", after: int) -> bool:
    """Whether a drop after `after` takes back (part of) a run's content item."""
    if isinstance(item, _Block):
        return item.pieces[-1][0] > after  # its deltas are agent events
    return dropped_by(after, item.seq, _EVENT_OF[type(item)])


class Reducer:
    """A session's stored events in, in order; operations out. `run_id`: only that run's events
    count (a UI protocol's response is one run); `quiet_until`: the client has the events up to this
    id (see `quiet`); `answered`: input ids of the questions answered when the stream opened."""

    def __init__(self, run_id: str | None = None, quiet_until: int = 0, answered: Iterable[str] = ()) -> None:
        self.run_id = run_id
        self.quiet_until = quiet_until
        self.answered = frozenset(answered)
        self.event_ts = 0.0  # the Redis time (s) of the event being reduced
        self._shown: str | None = None  # the run being shown: a session's runs go one at a time
        self._content: list[_Block | Shown] = []  # what it shows since it last started over
        self._open: _Block | None = None
        self._delta_head = b""  # how the run shown's deltas begin, as the worker writes them
        # Of the questions asked at once being reduced: whether one was unanswered when the stream opened,
        # and how many answers to them it will read (those known then).
        self._asking, self._answers_due = False, 0

    def quiet(self, seq: int) -> bool:
        """Whether the client has the operations of event `seq` already (a resume after it)."""
        return seq <= self.quiet_until

    def reduce(self, event: StoredEvent) -> list[Operation]:
        if self._shown is not None and (kind := _DELTAS.get(event.type)) is not None:
            # Most events are deltas of the run shown, as the worker writes them: read without parsing.
            text = _delta_text(event.data, self._delta_head)
            if text is not None:
                self.event_ts = event.ts_us / 1e6
                return self._delta(self._shown, kind, text, event.seq)
        data = parse(event)
        if data is None or (self.run_id is not None and data.run_id != self.run_id):
            return []
        self.event_ts = event.ts_us / 1e6
        seq = event.seq
        if data.run_id != self._shown and not isinstance(data, RunQueued | RunCancelled | SteerAccepted | SteerFailed):
            self._shown, self._content, self._open = data.run_id, [], None  # a run queued behind may end unshown
            self._delta_head = b'{"run_id":%s,"text":"' % json.dumps(data.run_id).encode()
        agent = event.type in _AGENT_TYPES or event.type.startswith(_DATA_PREFIX)
        return self._agent(data, seq) if agent else self._run(data, seq)

    def pass_deltas(self, events: list[StoredEvent], index: int, most: int) -> tuple[int, list[str]]:
        """The deltas from `events[index]` on that go on in the open block, as the worker wrote them,
        reduced without operations, up to `most` with text: for a renderer whose client is owed
        nothing for them (it only counts them). How many events it took, and their texts (those
        with some: a `BlockAppended` each, had they been reduced one by one)."""
        block = self._open
        if block is None or self._shown is None:
            return 0, []
        event_type = _TYPE_OF[block.kind]
        texts: list[str] = []
        taken = 0
        for event in islice(events, index, None):
            if len(texts) >= most or event.type != event_type:
                break
            text = _delta_text(event.data, self._delta_head)
            if text is None:
                break
            block.pieces.append((event.seq, text))
            taken += 1
            if text:
                texts.append(text)
            self.event_ts = event.ts_us / 1e6
        return taken, texts

    def _agent(self, data: EventData, seq: int) -> list[Operation]:
        run_id = data.run_id
        match data:
            case MessageDelta(text=text):
                return self._delta(run_id, "text", text, seq)
            case ReasoningDelta(text=text):
                return self._delta(run_id, "reasoning", text, seq)
            case Status(text=text):
                return self._show(StatusShown(run_id, text, seq))
            case CustomData(name=name, data=value):
                return self._show(DataShown(run_id, name, value, seq))
            case ToolStarted(call_id=call_id, name=name, arguments=arguments):
                return [*self._close(seq), *self._show(ToolCalled(run_id, call_id, name, arguments, seq))]
            case ToolCompleted(call_id=call_id, result=result):
                return self._show(ToolFinished(run_id, call_id, result, seq))
            case ToolFailed(call_id=call_id, error=error, denied=True):
                return self._show(ToolDenied(run_id, call_id, error, seq))
            case ToolFailed(call_id=call_id, error=error):
                return self._show(ToolFailedOp(run_id, call_id, error, seq))
        return []

    def _run(self, data: EventData, seq: int) -> list[Operation]:
        run_id = data.run_id
        match data:
            case RunQueued(input=text):
                return [RunOpened(run_id, text, seq)]
            case RunStarted(attempt=attempt, reason=reason):
                return [*self._close(seq), AttemptStarted(run_id, attempt, reason, seq)]
            case InputRequired() as question:
                answered = question.input_id in self.answered
                self._asking = self._asking or not answered
                self._answers_due += answered
                stops = question.more == 0 and self._asking and not self._answers_due
                asked = QuestionAsked(run_id, question, answered, stops, seq)
                return [*self._close(seq), *self._show(asked)]
            case InputReceived(input_id=input_id, answer=answer, waiting_for=waiting_for):
                self._answers_due = max(0, self._answers_due - 1)
                stops = bool(waiting_for) and self._asking and not self._answers_due
                self._asking = self._asking and bool(waiting_for)
                return self._show(QuestionAnswered(run_id, input_id, answer, waiting_for, stops, seq))
            case SteerAccepted(steer_id=steer_id, input=text):
                return [SteerShown(run_id, steer_id, "accepted", text, None, seq)]
            case SteerApplied(steer_id=steer_id):
                return [*self._close(seq), SteerShown(run_id, steer_id, "applied", None, None, seq)]
            case SteerFailed(steer_id=steer_id, reason=reason):
                return [SteerShown(run_id, steer_id, "failed", None, reason, seq)]
            case RunRetrying() | RunContinued():
                after = drop_point(data)
                assert after is not None
                return self._drop(run_id, after, seq)
            case RunCompleted() | RunFailed() | RunCancelled():
                why: ClosedBecause = "completed" if isinstance(data, RunCompleted) else "stopped"
                closed = self._close(seq, why) if run_id == self._shown else []
                if run_id == self._shown:
                    self._shown, self._content = None, []
                return [*closed, RunEnded(run_id, data, seq)]
        return []

    def _show(self, operation: Shown) -> list[Operation]:
        self._content.append(operation)
        return [operation]

    def _delta(self, run_id: str, kind: BlockKind, text: str, seq: int) -> list[Operation]:
        operations: list[Operation] = []
        block = self._open
        if block is None or block.kind != kind:
            operations = self._close(seq)
            block = self._open = _Block(kind, seq)
            self._content.append(block)
            operations.append(BlockOpened(run_id, kind, seq, seq))
        block.pieces.append((seq, text))
        if text:
            operations.append(BlockAppended(run_id, kind, block.id, text, seq))
        return operations

    def _close(self, seq: int, reason: ClosedBecause = "next") -> list[Operation]:
        block, self._open = self._open, None
        if block is None or self._shown is None:
            return []
        block.closed_at = seq
        return [BlockClosed(self._shown, block.kind, block.id, seq, reason)]

    def _drop(self, run_id: str, after: int, seq: int) -> list[Operation]:
        """A takeover's drop: what the run keeps, shown again; nothing if it drops nothing."""
        if not any(_dropped(item, after) for item in self._content):
            return []  # the run goes on, in its open block
        closed = self._close(seq, "dropped")
        content: list[_Block | Shown] = []
        kept: list[Operation] = []
        for item in self._content:
            if not isinstance(item, _Block):
                if not _dropped(item, after):
                    content.append(item)
                    # A question kept was answered (the run went on): it no longer stops a stream.
                    if isinstance(item, QuestionAsked):
                        item = replace(item, answered=True, stops=False)
                    elif isinstance(item, QuestionAnswered):
                        item = replace(item, stops=False)
                    kept.append(item)
                continue
            pieces = [(at, text) for at, text in item.pieces if at <= after]
            if not pieces:
                continue
            closed_at = item.closed_at if item.closed_at is not None and item.closed_at <= after else seq
            content.append(_Block(item.kind, item.id, pieces, closed_at))
            kept.append(BlockOpened(run_id, item.kind, item.id, item.id))
            if text := "".join(text for _, text in pieces):
                kept.append(BlockAppended(run_id, item.kind, item.id, text, pieces[-1][0]))
            kept.append(BlockClosed(run_id, item.kind, item.id, closed_at))
        self._content = content
        return [*closed, ContentDropped(run_id, after, tuple(kept), seq)]
