"""What a client shows of a session's runs: stored events reduced to protocol-neutral operations
(gateway/reducer/operations.py).

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

from tokentail.gateway.reducer.operations import (
    AttemptStarted,
    BlockAppended,
    BlockClosed,
    BlockKind,
    BlockOpened,
    ChildEnded,
    ChildStarted,
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
    RunSpawned,
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
from tokentail.shared.vocabulary.run_tree import Subtree

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


@dataclass(slots=True)
class _Run:
    """What the reducer holds of one run it shows: runs of a session's tree stream side by side."""

    id: str
    head: bytes  # how its deltas begin, as the worker writes them
    content: list[_Block | Shown] = field(default_factory=list)  # what it shows since it last started over
    open: _Block | None = None
    children: list[str] = field(default_factory=list)  # its child runs, in spawn order
    ended: bool = False
    # Of the questions asked at once being reduced: whether one was unanswered when the stream opened,
    # and how many answers to them it will read (those known then).
    asking: bool = False
    answers_due: int = 0


def _run_state(run_id: str) -> _Run:
    return _Run(run_id, b'{"run_id":%s,"text":"' % json.dumps(run_id).encode())


class Reducer:
    """A session's stored events in, in order; operations out. `run_id`: only that run's events
    count, and its descendants' (a UI protocol's response is one run and its sub-agent tree: the
    children are learned from their `run.spawned`, read as the run is, from its start);
    `quiet_until`: the client has the events up to this id (see `quiet`); `answered`: input ids of
    the questions answered when the stream opened.

    A child run's operations carry its own run id; its start and end are also its parent's
    (`ChildStarted`, `ChildEnded`). Children stream concurrently, so what is open, what a drop
    keeps and the questions asked at once are held per run."""

    def __init__(self, run_id: str | None = None, quiet_until: int = 0, answered: Iterable[str] = ()) -> None:
        self.run_id = run_id
        self.quiet_until = quiet_until
        self.answered = frozenset(answered)
        self.event_ts = 0.0  # the Redis time (s) of the event being reduced
        self._runs: dict[str, _Run] = {}  # the runs being shown: a tree's are held until its root ends
        self._hot: _Run | None = None  # the run of the last event: most deltas continue it
        self._parents: dict[str, str] = {}  # child run -> parent, of the children followed
        self._gone: set[str] = set()  # children whose tree ended: what a cancel's cascade still writes is not shown
        self._followed: Subtree | None = None if run_id is None else Subtree(run_id)  # None: every run

    def quiet(self, seq: int) -> bool:
        """Whether the client has the operations of event `seq` already (a resume after it)."""
        return seq <= self.quiet_until

    def shown(self, run_id: str) -> tuple[Operation, ...]:
        """What run `run_id` shows now, as operations (a block as opened, its text in one append,
        and closed if it is): for a protocol that shows a whole tree again after one run's drop."""
        run = self._runs.get(run_id)
        return () if run is None else _as_operations(run.id, run.content)

    def reduce(self, event: StoredEvent) -> list[Operation]:
        hot = self._hot
        if hot is not None and (kind := _DELTAS.get(event.type)) is not None:
            # Most events are deltas of the run of the last one, as the worker writes them: read
            # without parsing. Children interleave: another run's are found by their heads.
            text = _delta_text(event.data, hot.head)
            if text is None and len(self._runs) > 1:
                hot, text = self._delta_of_another(event.data)
            if hot is not None and text is not None:
                self._hot = hot
                self.event_ts = event.ts_us / 1e6
                return self._delta(hot, kind, text, event.seq)
        data = parse(event)
        if data is None:
            return []
        if isinstance(data, RunSpawned):
            return self._spawned(data, event)
        run_id = data.run_id
        if self._followed is not None and run_id not in self._followed:
            return []
        run = self._runs.get(run_id)
        if (run is not None and run.ended) or run_id in self._gone:
            return []  # a child that ended (with its ancestor, perhaps, before its own end came)
        self.event_ts = event.ts_us / 1e6
        if not isinstance(data, RunQueued | RunCancelled | SteerAccepted | SteerFailed):
            if run is None:
                run = self._runs[run_id] = _run_state(run_id)  # a run queued behind may end unshown
            self._hot = run
        agent = event.type in _AGENT_TYPES or event.type.startswith(_DATA_PREFIX)
        return self._agent(data, event.seq) if agent else self._run(data, event.seq)

    def pass_deltas(self, events: list[StoredEvent], index: int, most: int) -> tuple[int, list[str]]:
        """The deltas from `events[index]` on that go on in the open block of the run followed, as
        the worker wrote them, reduced without operations, up to `most` with text: for a renderer
        whose client is owed nothing for them (it only counts them). How many events it took, and
        their texts (those with some: a `BlockAppended` each, had they been reduced one by one)."""
        run = self._hot
        block = None if run is None or run.id != self.run_id else run.open
        if run is None or block is None:
            return 0, []
        event_type = _TYPE_OF[block.kind]
        texts: list[str] = []
        taken = 0
        for event in islice(events, index, None):
            if len(texts) >= most or event.type != event_type:
                break
            text = _delta_text(event.data, run.head)
            if text is None:
                break
            block.pieces.append((event.seq, text))
            taken += 1
            if text:
                texts.append(text)
            self.event_ts = event.ts_us / 1e6
        return taken, texts

    def _delta_of_another(self, data: bytes) -> tuple[_Run | None, str | None]:
        for run in self._runs.values():
            if not run.ended and (text := _delta_text(data, run.head)) is not None:
                return run, text
        return None, None

    def _spawned(self, data: RunSpawned, event: StoredEvent) -> list[Operation]:
        """A child run started: followed if its parent is (once: a parent taken over re-attaches)."""
        parent, child = data.parent_run_id, data.run_id
        if child in self._parents or (self._followed is not None and not self._followed.spawned(child, parent)):
            return []
        self.event_ts = event.ts_us / 1e6
        self._parents[child] = parent
        self._runs[child] = _run_state(child)
        if (parent_run := self._runs.get(parent)) is not None:
            parent_run.children.append(child)
        return [ChildStarted(parent, child, data.agent, data.name, data.cause.call_id, data.input, event.seq)]

    def _agent(self, data: EventData, seq: int) -> list[Operation]:
        run_id = data.run_id
        run = self._runs[run_id]
        match data:
            case MessageDelta(text=text):
                return self._delta(run, "text", text, seq)
            case ReasoningDelta(text=text):
                return self._delta(run, "reasoning", text, seq)
            case Status(text=text):
                return _show(run, StatusShown(run_id, text, seq))
            case CustomData(name=name, data=value):
                return _show(run, DataShown(run_id, name, value, seq))
            case ToolStarted(call_id=call_id, name=name, arguments=arguments):
                return [*_close(run, seq), *_show(run, ToolCalled(run_id, call_id, name, arguments, seq))]
            case ToolCompleted(call_id=call_id, result=result):
                return _show(run, ToolFinished(run_id, call_id, result, seq))
            case ToolFailed(call_id=call_id, error=error, denied=True):
                return _show(run, ToolDenied(run_id, call_id, error, seq))
            case ToolFailed(call_id=call_id, error=error):
                return _show(run, ToolFailedOp(run_id, call_id, error, seq))
        return []

    def _run(self, data: EventData, seq: int) -> list[Operation]:  # noqa: C901 (one case per event)
        run_id = data.run_id
        match data:
            case RunQueued(input=text):
                return [RunOpened(run_id, text, seq)]
            case RunStarted(reason="fork"):  # a fork's run goes on from an event of it, as after a takeover
                return _drop(self._runs[run_id], drop_point(data) or 0, seq)
            case RunStarted(attempt=attempt, reason=reason):
                return [*_close(self._runs[run_id], seq), AttemptStarted(run_id, attempt, reason, seq)]
            case InputRequired() as question:
                run = self._runs[run_id]
                answered = question.input_id in self.answered
                run.asking = run.asking or not answered
                run.answers_due += answered
                stops = question.more == 0 and run.asking and not run.answers_due
                asked = QuestionAsked(run_id, question, answered, stops, seq)
                return [*_close(run, seq), *_show(run, asked)]
            case InputReceived(input_id=input_id, answer=answer, waiting_for=waiting_for):
                run = self._runs[run_id]
                run.answers_due = max(0, run.answers_due - 1)
                stops = bool(waiting_for) and run.asking and not run.answers_due
                run.asking = run.asking and bool(waiting_for)
                return _show(run, QuestionAnswered(run_id, input_id, answer, waiting_for, stops, seq))
            case SteerAccepted(steer_id=steer_id, input=text):
                return [SteerShown(run_id, steer_id, "accepted", text, None, seq)]
            case SteerApplied(steer_id=steer_id):
                return [*_close(self._runs[run_id], seq), SteerShown(run_id, steer_id, "applied", None, None, seq)]
            case SteerFailed(steer_id=steer_id, reason=reason):
                return [SteerShown(run_id, steer_id, "failed", None, reason, seq)]
            case RunRetrying() | RunContinued():
                after = drop_point(data)
                assert after is not None
                return _drop(self._runs[run_id], after, seq)
            case RunCompleted() | RunFailed() | RunCancelled():
                return self._ended(run_id, data, seq)
        return []

    def _ended(self, run_id: str, ending: RunCompleted | RunFailed | RunCancelled, seq: int) -> list[Operation]:
        """A run's end: its children still open end with it first (deepest first); a child's end
        is its parent's `ChildEnded`, a root's (the run followed, a session's own) `RunEnded`, after
        which its tree is no longer held."""
        run = self._runs.get(run_id)
        parent = self._parents.get(run_id)
        if run is not None and run.ended:
            return []  # a child that ended with its ancestor
        operations: list[Operation] = []
        if run is not None:
            reason = ending.reason if isinstance(ending, RunCancelled) else "parent_ended"
            for child in run.children:
                cut = RunCancelled(run_id=child, reason=reason, parent_run_id=run_id)
                operations += self._ended(child, cut, seq)
            why: ClosedBecause = "completed" if isinstance(ending, RunCompleted) else "stopped"
            operations += _close(run, seq, why)
            run.ended = True
            if self._hot is run:
                self._hot = None
        if parent is not None and run_id != self.run_id:
            return [*operations, ChildEnded(parent, run_id, ending, seq)]
        self._forget(run_id)
        return [*operations, RunEnded(run_id, ending, seq)]

    def _forget(self, run_id: str) -> None:
        run = self._runs.pop(run_id, None)
        for child in run.children if run is not None else ():
            self._gone.add(child)
            self._forget(child)

    def _delta(self, run: _Run, kind: BlockKind, text: str, seq: int) -> list[Operation]:
        operations: list[Operation] = []
        block = run.open
        if block is None or block.kind != kind:
            operations = _close(run, seq)
            block = run.open = _Block(kind, seq)
            run.content.append(block)
            operations.append(BlockOpened(run.id, kind, seq, seq))
        block.pieces.append((seq, text))
        if text:
            operations.append(BlockAppended(run.id, kind, block.id, text, seq))
        return operations


def _show(run: _Run, operation: Shown) -> list[Operation]:
    run.content.append(operation)
    return [operation]


def _close(run: _Run, seq: int, reason: ClosedBecause = "next") -> list[Operation]:
    block, run.open = run.open, None
    if block is None:
        return []
    block.closed_at = seq
    return [BlockClosed(run.id, block.kind, block.id, seq, reason)]


def _drop(run: _Run, after: int, seq: int) -> list[Operation]:
    """A takeover's drop of one run's content: what it keeps, shown again; nothing if it drops nothing."""
    if not any(_dropped(item, after) for item in run.content):
        return []  # the run goes on, in its open block
    closed = _close(run, seq, "dropped")
    content: list[_Block | Shown] = []
    for item in run.content:
        if not isinstance(item, _Block):
            if not _dropped(item, after):
                # A question kept was answered (the run went on): it no longer stops a stream.
                if isinstance(item, QuestionAsked):
                    item = replace(item, answered=True, stops=False)
                elif isinstance(item, QuestionAnswered):
                    item = replace(item, stops=False)
                content.append(item)
            continue
        pieces = [(at, text) for at, text in item.pieces if at <= after]
        if pieces:
            closed_at = item.closed_at if item.closed_at is not None and item.closed_at <= after else seq
            content.append(_Block(item.kind, item.id, pieces, closed_at))
    run.content = content
    return [*closed, ContentDropped(run.id, after, _as_operations(run.id, content), seq)]


def _as_operations(run_id: str, content: list[_Block | Shown]) -> tuple[Operation, ...]:
    """A run's content as operations: a block as opened, its text in one append, and closed if it is."""
    operations: list[Operation] = []
    for item in content:
        if not isinstance(item, _Block):
            operations.append(item)
            continue
        operations.append(BlockOpened(run_id, item.kind, item.id, item.id))
        if text := "".join(text for _, text in item.pieces):
            operations.append(BlockAppended(run_id, item.kind, item.id, text, item.pieces[-1][0]))
        if item.closed_at is not None:
            operations.append(BlockClosed(run_id, item.kind, item.id, item.closed_at))
    return tuple(operations)
