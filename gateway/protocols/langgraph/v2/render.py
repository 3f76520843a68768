"""LangGraph's v2 Agent Streaming Protocol events (what `@langchain/langgraph-sdk` 1.15's
`client.threads.stream()` reads) from a session's stored events, through the reducer's operations.

Every event is an envelope `{"type": "event", "event_id", "seq", "method", "params": {"namespace",
"timestamp", "data"}}`; its channel follows from `method`:

    run.started (an attempt)   lifecycle {event: running}, the run's namespace
    message.delta              messages: message-start {role: ai, id}, content-block-start, then
    reasoning.delta              content-block-delta {text-delta | reasoning-delta} per delta; the
                                 block's close: content-block-finish (the whole block), message-finish
    tool.started               tools tool-started {tool_call_id, tool_name, input} (once per call: one a
                               run started over makes again is not said again; its end is)
    tool.completed / .failed   tools tool-finished {output} / tool-error {message} (a denial too)
    input.required             input.requested {interrupt_id: the question's input id, payload: its
                               public fields}; the last of those asked at once: lifecycle interrupted
    input.received             input.answered {interrupt_ids}
    status, data.<name>,       custom {name: status | <name> | steer | gap | dropped, payload}
      steer.*, a gap, a drop
    run.spawned                lifecycle {event: started, graph_name: the child's agent, cause:
                               {type: toolCall, tool_call_id}} in the child's namespace
    a run's end                lifecycle completed | failed {error} (a cancel: failed, `cancelled: <reason>`),
                               then values: the thread's values after it (and after a stop at questions),
                               read by the feed (v2/feed.py) as the envelope goes out

Namespaces: the session's own runs are the root (`[]`); a child run is its parent's namespace and
`<agent>:<child run id>` (the SDK matches a filter's `agent` against it, the part after `:` aside).

Ids. `seq` is the session's seq of the stored event an envelope comes from; `event_id` is
`<ms>-<seq>` (ms: the stored event's Redis time) on the last envelope the event became and
`<ms>-<seq>.<k>` on the k-th before it, counted before any filter, so a stream of any filter, on
any gateway, gives an envelope the same id: the SDK drops by `event_id` what it has (it replays a
run from its start at every reconnect), and a `Last-Event-ID` of either form resumes right after it
(`Cursor`). An envelope a replay leaves out (a question answered when the stream opened, an
interrupt that no longer stops) keeps its place in that count.
"""

import re
from dataclasses import dataclass, field
from typing import Any, assert_never

from tokentail.gateway.protocols.langgraph.state import ai_message_id, interrupt_json
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.renderer import Renderer, compact
from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.vocabulary.errors import InvalidLastEventId
from tokentail.shared.vocabulary.events import Ending, Gap, RunCancelled, RunCompleted, RunFailed

CHANNELS = frozenset({"values", "updates", "messages", "tools", "lifecycle", "input", "checkpoints", "tasks", "custom"})
_CHANNEL_OF = {
    "values": "values",
    "messages": "messages",
    "tools": "tools",
    "lifecycle": "lifecycle",
    "input.requested": "input",
    "input.answered": "input",
    "custom": "custom",
}
Namespace = list[str]


@dataclass(frozen=True)
class Cursor:
    """Where a client resumes: after stored event `after`, having also the first `within` envelopes
    of the one after it (an id `<ms>-<seq>.<k>`: a stream cut inside an event)."""

    after: int
    within: int = 0

    @classmethod
    def since(cls, seq: int) -> "Cursor":
        """A `since`: the seq of the last envelope a client has, which others of that event may share
        (langgraph-sdk's v2 client sends the highest it saw). The event is sent again, whole: the SDKs
        drop by `event_id` the envelopes they had, and none is missed."""
        return cls(max(seq - 1, 0))

    @classmethod
    def of(cls, last_event_id: str) -> "Cursor":
        match = re.fullmatch(r"(?:\d{1,15}-)?(\d{1,18})(?:\.(\d{1,4}|values))?", last_event_id.strip())
        if match is None:
            raise InvalidLastEventId(last_event_id, "a v2 event_id: <ms>-<seq> or <ms>-<seq>.<k>")
        seq, part = match.groups()
        if part is None or part == "values":  # `values` follows the event's last envelope
            return cls(int(seq))
        if int(seq) == 0:
            raise InvalidLastEventId(last_event_id, "no event 0")
        return cls(int(seq) - 1, int(part) + 1)


@dataclass(frozen=True)
class Filter:
    """What one stream (or WebSocket subscription) asked for: `channels` (a `custom:<name>` one
    included), `namespaces` (prefixes; None: all), `depth` (below a prefix; None: any)."""

    channels: frozenset[str]
    namespaces: tuple[tuple[str, ...], ...] | None = None
    depth: int | None = None

    def admits(self, method: str, namespace: Namespace, data: dict[str, Any]) -> bool:
        channel = _CHANNEL_OF.get(method)
        if channel is None:
            return False
        if channel not in self.channels:
            name = data.get("name") if channel == "custom" else None
            if name is None or f"custom:{name}" not in self.channels:
                return False
        if not self.namespaces:
            return self.depth is None or len(namespace) <= self.depth
        return any(
            _prefixed(namespace, prefix) and (self.depth is None or len(namespace) - len(prefix) <= self.depth)
            for prefix in self.namespaces
        )


def _prefixed(namespace: Namespace, prefix: tuple[str, ...]) -> bool:
    """The SDK's prefix match: a segment equal, or, where the prefix's has no `:`, equal to the
    namespace's before its `:` (`researcher` matches `researcher:r_1`)."""
    if len(prefix) > len(namespace):
        return False
    return all(
        got == want or (":" not in want and got.partition(":")[0] == want)
        for got, want in zip(namespace, prefix, strict=False)
    )


def message_id(run_id: str, kind: str, block: int) -> str:
    """A text block is the AI message `values` has (state.py's id); reasoning, no message there, its own."""
    return ai_message_id(run_id, block) if kind == "text" else f"reasoning:{run_id}:{block}"


@dataclass(slots=True)
class _Envelope:
    method: str
    namespace: Namespace
    data: dict[str, Any]
    shown: bool = True  # False: left out of this stream, its id kept (see the module's docstring)


@dataclass(slots=True)
class _Open:
    message_id: str
    kind: str
    text: list[str] = field(default_factory=list)


Part = dict[str, Any]  # an envelope


class V2Events(Renderer[Part], op.OperationCases[list[_Envelope]]):
    """A thread's v2 events after `cursor`, as `filter` asks. The reducer follows every run of the
    session (`run_id` None), so the stream goes on across runs: it ends only when its client leaves."""

    def __init__(self, filter: Filter, cursor: Cursor = Cursor(0)) -> None:
        super().__init__(Reducer(None, cursor.after))
        self.filter = filter
        self._within = cursor.within
        self._after = cursor.after
        self._namespaces: dict[str, Namespace] = {}  # child run -> its namespace (the root's is [])
        self._open: dict[str, _Open] = {}  # run -> its open message
        # The tool calls the client was told of, by (run, call id): a run started over (a drop of all it
        # did) makes its calls again, and v2 has no retraction: the call shows once, with its latest end.
        self._calls: set[tuple[str, str]] = set()
        # The `values` envelopes rendered and not yet filled: the feed reads the thread's values for them.
        self.values_due: list[Part] = []

    # -- ids and framing -----------------------------------------------------------------------------

    def rendered(self, batch: Batch) -> list[tuple[list[Part], int | None]]:
        out: list[tuple[list[Part], int | None]] = []
        if batch.gap is not None:
            out.append((self._gap(batch.gap), None))
        for event in batch.events:
            envelopes: list[_Envelope] = []
            for operation in self.reducer.reduce(event):
                envelopes += self.cases(operation)
            if not envelopes or self.reducer.quiet(event.seq):
                continue
            ms, last = event.ts_us // 1000, len(envelopes) - 1
            skip = self._within if event.seq == self._after + 1 else 0
            parts = [
                _framed(envelope, f"{ms}-{event.seq}" if k == last else f"{ms}-{event.seq}.{k}", event.seq, ms)
                for k, envelope in enumerate(envelopes)
                if k >= skip
                and envelope.shown
                and self.filter.admits(envelope.method, envelope.namespace, envelope.data)
            ]
            if parts:
                self.values_due += [part for part in parts if part["method"] == "values"]
                out.append((parts, event.seq))
        return out

    def render(self, operation: op.Operation) -> list[Part]:
        """What one operation becomes, as envelopes without ids (the base class's `opening` renders a gap)."""
        return [_framed(envelope, "", 0, 0) for envelope in self.cases(operation)]

    def opening(self, gap: Gap | None) -> list[Part]:
        return self._gap(gap) if gap is not None else []

    def _gap(self, gap: Gap) -> list[Part]:
        """A gap has no stored event: its envelope has no id (the SDK keeps every event without one).
        None for a client past it: a stream resumed after the gap reads from its run's start, before it."""
        data = {"name": "gap", "payload": gap.model_dump()}
        if gap.first_available <= self._after + 1 or not self.filter.admits("custom", [], data):
            return []
        return [{"type": "event", "method": "custom", "params": {"namespace": [], "timestamp": 0, "data": data}}]

    # -- operations ----------------------------------------------------------------------------------

    def _ns(self, run_id: str) -> Namespace:
        return self._namespaces.get(run_id, [])

    def _message(self, run_id: str, data: dict[str, Any]) -> _Envelope:
        return _Envelope("messages", self._ns(run_id), data)

    def on_run(self, operation: op.RunOperation) -> list[_Envelope]:
        match operation:
            case op.RunOpened():
                return []  # a queued run shows from its start
            case op.AttemptStarted(run_id=run_id):
                return [_Envelope("lifecycle", self._ns(run_id), {"event": "running"})]
            case op.ContentDropped(run_id=run_id, after=after):
                # What a takeover dropped stays in the client's messages (v2 has no retraction): said.
                dropped = {"name": "dropped", "payload": {"run_id": run_id, "after_seq": after}}
                return [_Envelope("custom", self._ns(run_id), dropped)]
            case op.RunEnded(run_id=run_id, ending=ending):
                self._open.pop(run_id, None)
                return [_Envelope("lifecycle", [], _ended(ending)), _Envelope("values", [], {})]
            case _:
                assert_never(operation)

    def on_block(self, operation: op.BlockOperation) -> list[_Envelope]:
        match operation:
            case op.BlockAppended(run_id=run_id, kind=kind, text=text):
                opened = self._open.get(run_id)
                if opened is not None:
                    opened.text.append(text)
                delta = (
                    {"type": "text-delta", "text": text}
                    if kind == "text"
                    else {"type": "reasoning-delta", "reasoning": text}
                )
                return [self._message(run_id, {"event": "content-block-delta", "index": 0, "delta": delta})]
            case op.BlockOpened(run_id=run_id, kind=kind, block=block):
                self._open[run_id] = _Open(message_id(run_id, kind, block), kind)
                start = {"event": "message-start", "role": "ai", "id": message_id(run_id, kind, block)}
                content = {"type": "text", "text": ""} if kind == "text" else {"type": "reasoning", "reasoning": ""}
                return [self._message(run_id, start), self._message(run_id, _block("content-block-start", content))]
            case op.BlockClosed(run_id=run_id, kind=kind):
                opened = self._open.pop(run_id, None)
                text = "".join(opened.text) if opened is not None else ""
                content = {"type": "text", "text": text} if kind == "text" else {"type": "reasoning", "reasoning": text}
                finish = {"event": "message-finish", "reason": operation.reason}
                return [self._message(run_id, _block("content-block-finish", content)), self._message(run_id, finish)]
            case _:
                assert_never(operation)

    def on_tool(self, operation: op.ToolOperation) -> list[_Envelope]:
        match operation:
            case op.ToolCalled(run_id=run_id, call_id=call_id, name=name, arguments=arguments):
                data = {"event": "tool-started", "tool_call_id": call_id, "tool_name": name, "input": arguments}
                known, self._calls = (run_id, call_id) in self._calls, self._calls | {(run_id, call_id)}
                return [_Envelope("tools", self._ns(run_id), data, shown=not known)]
            case op.ToolFinished(call_id=call_id, result=result):
                data = {"event": "tool-finished", "tool_call_id": call_id, "output": result}
            case op.ToolFailedOp(call_id=call_id, error=error):
                data = {"event": "tool-error", "tool_call_id": call_id, "message": error}
            case op.ToolDenied(call_id=call_id, error=error):
                data = {"event": "tool-error", "tool_call_id": call_id, "message": error, "code": "denied"}
            case _:
                assert_never(operation)
        return [_Envelope("tools", self._ns(operation.run_id), data)]

    def on_shown(self, operation: op.ShownOperation) -> list[_Envelope]:
        match operation:
            case op.StatusShown(text=text):
                shown = {"name": "status", "payload": {"text": text}}
            case op.DataShown(name=name, data=data):
                shown = {"name": name, "payload": data}
            case op.SteerShown(steer_id=steer_id, status=status, input=text, reason=reason):
                steer = {"steer_id": steer_id, "status": status, "input": text, "reason": reason}
                shown = {"name": "steer", "payload": {key: value for key, value in steer.items() if value is not None}}
            case _:
                assert_never(operation)
        return [_Envelope("custom", self._ns(operation.run_id), shown)]

    def on_question(self, operation: op.QuestionOperation) -> list[_Envelope]:
        if isinstance(operation, op.QuestionAnswered):
            return [_Envelope("input.answered", [], {"interrupt_ids": [operation.input_id]})]
        question = operation.question
        data = {"interrupt_id": question.input_id, "payload": interrupt_json(question)["value"]}
        asked = [_Envelope("input.requested", self._ns(operation.run_id), data, shown=not operation.answered)]
        if question.more:
            return asked
        # The run stops at the last of the questions asked at once: its tree's root says so, then the
        # thread's values (the feed fills them in).
        stops = operation.stops
        return [
            *asked,
            _Envelope("lifecycle", [], {"event": "interrupted"}, shown=stops),
            _Envelope("values", [], {}, shown=stops),
        ]

    def on_child(self, operation: op.ChildOperation) -> list[_Envelope]:
        if isinstance(operation, op.ChildEnded):
            return [_Envelope("lifecycle", self._ns(operation.child_run_id), _ended(operation.ending))]
        agent, child = operation.agent, operation.child_run_id
        namespace = self._namespaces[child] = [*self._ns(operation.run_id), f"{agent}:{child}"]
        cause = {"type": "toolCall", "tool_call_id": operation.call_id}
        return [_Envelope("lifecycle", namespace, {"event": "started", "graph_name": agent, "cause": cause})]

    def on_gap(self, operation: op.GapFound) -> list[_Envelope]:
        return []  # a gap: `rendered`


def _block(event: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "index": 0, "content": content}


def _ended(ending: Ending) -> dict[str, Any]:
    match ending:
        case RunCompleted():
            return {"event": "completed"}
        case RunFailed(error=error):
            return {"event": "failed", "error": f"{error.type}: {error.message}"}
        case RunCancelled(reason=reason):
            return {"event": "failed", "error": f"cancelled: {reason}"}
        case _:
            assert_never(ending)


def _framed(envelope: _Envelope, event_id: str, seq: int, ms: int) -> Part:
    params = {"namespace": envelope.namespace, "timestamp": ms, "data": envelope.data}
    return {"type": "event", "event_id": event_id, "seq": seq, "method": envelope.method, "params": params}


def sse_frame(part: Part) -> str:
    """An envelope as one SSE frame: its `event_id` as the frame's id (what `Last-Event-ID` sends back)."""
    head = f"id: {part['event_id']}\n" if part.get("event_id") else ""
    return f"{head}event: {part['method']}\ndata: {compact(part)}\n\n"
