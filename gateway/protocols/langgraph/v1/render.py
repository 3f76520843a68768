"""LangGraph's v1 stream (`event: <mode>`, `data: <json>`), from a session's stored events, in the
modes a run's stream asks for:

    metadata        {run_id, attempt}: what a stream of a run opens with (a thread's: at each run)
    values          the thread's state (`values.messages`: state.py) after each step: a run's input,
                    each message complete (an AI message, a tool's result), a drop, the run's end; at a
                    question, with `__interrupt__` (the questions as interrupts)
    messages-tuple  event `messages`, data [chunk, metadata]: `AIMessageChunk`s of each text delta and
                    tool call (the message's id is state.py's), each tool's result as a `tool` message
    messages        LangGraph's older form: `messages/metadata`, `messages/partial` (the AI message so
                    far), `messages/complete`
    updates         {"agent": {"messages": [ai]}}, {"tools": {"messages": [tool]}}, {"__interrupt__": [...]}
    events          astream_events' `on_chat_model_stream`, `on_tool_start`/`on_tool_end`,
                    `on_chain_start`/`on_chain_end`
    custom          tokentail's own: `data.<name>` as {"name", "data"}, a status as
                    {"name": "status", "data": {"text"}}, steers and gaps likewise
    tools           a tool call's progress, as useStream's `toolProgress` reads it: {"event": "on_tool_start",
                    "toolCallId", "name", "input"}, then `on_tool_end` {"output"} or `on_tool_error` {"error"}
    error           a run that failed: {"error": its type, "message"}

A child run's (docs/subagents.md) go out, with `stream_subgraphs`, as `<mode>|<name>:<child run id>`
(a grandchild's: `<mode>|<child ns>|<name>:<id>`); without it, the parent's tool call shows it.
A stream of one run ends at its end, or at a question it stops at (LangGraph's runs end at an interrupt).

Frame ids: the last frame a stored event became has the event's id (the session's seq), the frames
before it `<seq>.<k>` (the k-th, from 0), so a reconnect with `Last-Event-ID` continues after the
frame it has, within an event too, on any gateway (`Position`). What opens a stream has the id of
the position the client has. The frames an event becomes depend only on the events before it and the
stream's modes, so a resume at a frame gets what followed it, once.
"""

import json
from typing import Any

from tokentail.gateway.protocols.langgraph import state
from tokentail.gateway.protocols.langgraph.state import Conversation, Message
from tokentail.gateway.reading.renderer import FramedRenderer, Position, compact, frame_ids
from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.errors import InvalidInput
from tokentail.shared.vocabulary.events import Gap, RunFailed

# The modes a stream serves, and those it refuses (422: `check_modes`).
MODES = ("values", "messages-tuple", "messages", "updates", "events", "custom", "tools")
REFUSED = {
    "debug": "tokentail runs no graph: it has no tasks or checkpoints to debug",
    "tasks": "tokentail runs no graph: it has no Pregel tasks",
    "checkpoints": "not streamed: a thread's checkpoints are read with POST /threads/{thread_id}/history",
}
# What a join with no `stream_mode` (and a thread's `run_modes`) streams: what `useStream` reads.
DEFAULT_MODES = ("values", "messages-tuple", "updates", "custom")

# An SSE event's name and its data as JSON, made as the operation is rendered: the messages it shows
# change as the run goes on, and a batch's parts are framed after all its events were rendered.
Part = tuple[str, str]


def check_modes(modes: list[str]) -> tuple[str, ...]:
    """The modes asked (an empty one left out), each one served; a 422 naming those served if not."""
    asked = tuple(dict.fromkeys(mode for mode in modes if mode))
    for mode in asked:
        if mode not in MODES:
            why = REFUSED.get(mode, "not a LangGraph stream mode")
            raise InvalidInput(f"stream_mode {mode!r} is not served ({why}); the modes served: {', '.join(MODES)}")
    return asked


def framed(parts: list[Part], seq: int | None) -> list[str]:
    """Each part as an SSE frame with its id (none for a gap's)."""
    ids = [""] * len(parts) if seq is None else [f"id: {frame_id}\n" for frame_id in frame_ids(seq, len(parts))]
    return [f"event: {event}\n{frame_id}data: {data}\n\n" for frame_id, (event, data) in zip(ids, parts, strict=True)]


class LangGraphEvents(FramedRenderer[Part]):
    """One client's v1 stream of a thread's runs: one run and its children (`run_id`), or every run
    (a thread's join: `run_id` None, ending once the thread is idle).

    `before`: the session's events up to where the stream reads from, reduced first (nothing sent),
    so its values hold the thread so far and a run already streaming goes on in the same message;
    `runs`: the runs whose messages the thread's values show, in order (a run queued later is shown
    as it opens); `quiet_until` and `within`: what the client has (`Position`); `answered`: questions
    answered when the stream opened (a replay goes past them); `opening`: the metadata to open with
    (a fresh stream of a run: its id and attempt), else None; `hidden`: runs a thread's stream leaves
    out (rolled back)."""

    def __init__(
        self,
        thread_id: str,
        run_id: str | None,
        modes: tuple[str, ...],
        *,
        before: list[StoredEvent],
        runs: list[str],
        subgraphs: bool = False,
        quiet_until: int = 0,
        within: int = 0,
        answered: frozenset[str] = frozenset(),
        opening: dict[str, Any] | None = None,
        hidden: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(Reducer(None, quiet_until, answered))
        self.thread_id, self.root, self.modes, self.subgraphs = thread_id, run_id, frozenset(modes), subgraphs
        self.conversation = Conversation()
        self.runs = list(runs)
        self.hidden = hidden  # runs a thread's stream leaves out (rolled back)
        self._has_until, self._had, self._opening = quiet_until, Position(quiet_until, within), opening
        self._spaces: dict[str, tuple[str, ...]] = {}  # a child run -> its namespace
        self._step = 0
        self._streamed: set[str] = set()  # AI messages that sent `messages/metadata`
        self._sent: dict[str, int] = {}  # per AI message, how much of its text the client got (a drop resends none)
        for event in before:
            for operation in self.reducer.reduce(event):
                self._follow(operation)
                self.conversation.apply(operation)

    # -- framing --

    def head(self, gap: Gap | None) -> bytes:
        """`metadata`, with the id of where the client is; then a gap before the client's next event,
        with no id (as every gap's), unless the client is past it already (a join of a trimmed
        session reads from the run's start: its client was told of the gap when it streamed)."""
        opened = framed([("metadata", compact(self._opening))], self._has_until) if self._opening is not None else []
        if gap is not None and self._has_until < gap.first_available - 1:
            opened += framed(self.opening(gap), None)
        return "".join(opened).encode()

    def frames(self, parts: list[Part], seq: int | None) -> bytes:
        frames = framed(parts, seq)
        return "".join(frames if seq is None else self._had.unsent(frames, seq)).encode()

    # -- rendering --

    def _follow(self, operation: op.Operation) -> None:
        """Learn the runs: a child of a run shown, its namespace; a session's run, its place."""
        if isinstance(operation, op.ChildStarted):
            parent = self._spaces.get(operation.run_id, ())
            if operation.run_id in self._spaces or self._shows(operation.run_id):
                self._spaces[operation.child_run_id] = (*parent, f"{operation.name}:{operation.child_run_id}")
        elif (
            isinstance(operation, op.RunOpened)
            and self.root is None
            and operation.run_id not in self.runs
            and operation.run_id not in self.hidden
        ):
            self.runs.append(operation.run_id)

    def _shows(self, run_id: str) -> bool:
        """Whether a session's run is one this stream shows (with its children)."""
        return run_id == self.root if self.root is not None else run_id in self.runs

    def render(self, operation: op.Operation) -> list[Part]:
        if isinstance(operation, op.GapFound):
            return self._custom("gap", operation.gap.model_dump(), ())
        self._follow(operation)
        changes = self.conversation.apply(operation)
        # A child's end is its own (in its namespace); its start, its parent's.
        run_id = operation.child_run_id if isinstance(operation, op.ChildEnded) else operation.run_id
        space = self._spaces.get(run_id)
        if space is None and not self._shows(run_id):
            return []  # another run of the session (its messages count in the thread's values)
        stops = isinstance(operation, op.QuestionAsked) and operation.stops
        if stops and self.root is not None:
            self.finished = True  # LangGraph's run ends at its interrupt: the answer goes on as `command.resume`
        if space is not None and not self.subgraphs:
            # A child's: its parent's tool call shows it; its questions are the run's interrupts.
            return self._interrupted() if stops else []
        ns = space or ()
        parts = self._shown(operation, run_id, ns)  # what the operation shows itself, then what it changed
        for change in changes:
            parts += self._change(change, run_id, ns)
        parts += self._closed(operation, run_id, changes, ns)
        if stops and ns:
            parts += self._interrupted()  # a child's interrupt is its root's too, as a subgraph's is
        if isinstance(operation, op.RunEnded) and operation.run_id == self.root:
            self.finished = True
        return parts

    def _interrupted(self) -> list[Part]:
        """The root's `__interrupt__`: every question its tree waits for."""
        interrupts = [
            state.interrupt_json(question)
            for run_id, questions in self.conversation.questions.items()
            if run_id in self._spaces or self._shows(run_id)
            for question in questions
        ]
        parts = self._mode("updates", (), {"__interrupt__": interrupts})
        return parts + self._mode("values", (), {**self._state("", ()), "__interrupt__": interrupts})

    def _shown(self, operation: op.Operation, run_id: str, ns: tuple[str, ...]) -> list[Part]:
        parts: list[Part] = []
        match operation:
            case op.RunOpened():
                if self.root is None:
                    parts.append(("metadata", compact({"run_id": run_id, "attempt": 1})))
                parts += self._event("on_chain_start", run_id, ns, {"input": {"messages": self._values(run_id, ns)}})
            case op.StatusShown(text=text):
                parts += self._custom("status", {"text": text}, ns)
            case op.DataShown(name=name, data=data):
                parts += self._custom(name, data, ns)
            case op.SteerShown(steer_id=steer_id, status=status, input=text, reason=reason):
                steer = {"steer_id": steer_id, "status": status, "input": text, "reason": reason}
                parts += self._custom("steer", steer, ns)
            case op.ToolCalled(call_id=call_id, name=name, arguments=arguments):
                parts += self._event("on_tool_start", run_id, ns, {"input": arguments}, name=name, call_id=call_id)
                tool = {"event": "on_tool_start", "toolCallId": call_id, "name": name, "input": arguments}
                parts += self._mode("tools", ns, tool)
        return parts

    def _closed(
        self, operation: op.Operation, run_id: str, changes: list[tuple[Any, ...]], ns: tuple[str, ...]
    ) -> list[Part]:
        parts: list[Part] = []
        match operation:
            case op.QuestionAsked(stops=True):
                interrupts = [state.interrupt_json(asked) for asked in self.conversation.questions.get(run_id, [])]
                parts += self._mode("updates", ns, {"__interrupt__": interrupts})
                parts += self._mode("values", ns, {**self._state(run_id, ns), "__interrupt__": interrupts})
            case op.ContentDropped():
                parts += self._mode("values", ns, self._state(run_id, ns))
            case op.RunEnded(ending=ending) | op.ChildEnded(ending=ending):
                if not any(change[0] == "done" for change in changes):  # else its last message's values said it
                    parts += self._mode("values", ns, self._state(run_id, ns))
                parts += self._event("on_chain_end", run_id, ns, {"output": self._state(run_id, ns)})
                if isinstance(ending, RunFailed) and not ns:
                    parts.append(("error", compact({"error": ending.error.type, "message": ending.error.message})))
        return parts

    def _change(self, change: tuple[Any, ...], run_id: str, ns: tuple[str, ...]) -> list[Part]:
        kind = change[0]
        if kind == "chunk":
            _, message_id, text = change
            return self._chunk(message_id, text, run_id, ns)
        if kind == "call":
            _, message_id, call = change
            return self._called(message_id, call, run_id, ns)
        if kind == "reset":
            return []
        message: Message = change[1]
        self._step += 1
        parts: list[Part] = []
        if message["type"] == "tool":
            parts += self._mode("messages-tuple", ns, [message, self._meta(run_id, ns, "tools")], event="messages")
            failed = message["status"] == "error"
            ended = {"event": "on_tool_error" if failed else "on_tool_end", "toolCallId": message["tool_call_id"]}
            ended |= {"name": message["name"], "error" if failed else "output": message["content"]}
            parts += self._mode("tools", ns, ended)
            parts += self._event("on_tool_end", run_id, ns, {"output": message}, name=message["name"])
            parts += self._mode("updates", ns, {"tools": {"messages": [message]}})
        elif message["type"] == "ai":
            parts += self._mode("updates", ns, {"agent": {"messages": [message]}})
        parts += self._mode("messages", ns, [message], event="messages/complete")
        parts += self._mode("values", ns, self._state(run_id, ns))
        return parts

    def _chunk(self, message_id: str, text: str, run_id: str, ns: tuple[str, ...]) -> list[Part]:
        message = self._message(run_id, message_id)
        sent = self._sent.get(message_id, 0)
        content = message["content"] if message is not None else text
        if len(content) <= sent:
            return []  # a drop took it back and the run streams it again: the client has it
        new = content[max(sent, len(content) - len(text)) :]
        self._sent[message_id] = len(content)
        chunk = _chunk(message_id, new)
        parts = self._metadata_once(message_id, run_id, ns)
        parts += self._mode("messages-tuple", ns, [chunk, self._meta(run_id, ns, "agent")], event="messages")
        if message is not None:
            parts += self._mode("messages", ns, [message], event="messages/partial")
        parts += self._event("on_chat_model_stream", run_id, ns, {"chunk": chunk})
        return parts

    def _called(self, message_id: str, call: dict[str, Any], run_id: str, ns: tuple[str, ...]) -> list[Part]:
        chunk = _chunk(message_id, "", call)
        parts = self._metadata_once(message_id, run_id, ns)
        parts += self._mode("messages-tuple", ns, [chunk, self._meta(run_id, ns, "agent")], event="messages")
        message = self._message(run_id, message_id)
        if message is not None:
            parts += self._mode("messages", ns, [message], event="messages/partial")
        return parts

    def _metadata_once(self, message_id: str, run_id: str, ns: tuple[str, ...]) -> list[Part]:
        if message_id in self._streamed or "messages" not in self.modes:
            return []
        self._streamed.add(message_id)
        return self._mode(
            "messages", ns, {message_id: {"metadata": self._meta(run_id, ns, "agent")}}, event="messages/metadata"
        )

    # -- shapes --

    def _mode(self, mode: str, ns: tuple[str, ...], data: Any, event: str | None = None) -> list[Part]:
        if mode not in self.modes:
            return []
        return [("|".join((event or mode, *ns)), compact(data))]

    def _custom(self, name: str, data: Any, ns: tuple[str, ...]) -> list[Part]:
        return self._mode("custom", ns, {"name": name, "data": data})

    def _event(self, kind: str, run_id: str, ns: tuple[str, ...], data: dict[str, Any], **more: Any) -> list[Part]:
        if "events" not in self.modes:
            return []
        body = {"event": kind, "name": more.get("name") or "agent", "run_id": more.get("call_id") or run_id}
        return self._mode("events", ns, {**body, "tags": [], "metadata": self._meta(run_id, ns, "agent"), "data": data})

    def _meta(self, run_id: str, ns: tuple[str, ...], node: str) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "run_id": run_id,
            "langgraph_node": node,
            "langgraph_step": self._step,
            "langgraph_checkpoint_ns": "|".join(ns),
            "tags": [],
        }

    def _message(self, run_id: str, message_id: str) -> Message | None:
        return next((m for m in reversed(self.conversation.of(run_id)) if m["id"] == message_id), None)

    def _values(self, run_id: str, ns: tuple[str, ...]) -> list[Message]:
        if ns:
            return list(self.conversation.of(run_id))  # a child's own conversation
        return [message for shown in self.runs for message in self.conversation.of(shown)]

    def _state(self, run_id: str, ns: tuple[str, ...]) -> dict[str, Any]:
        return {"messages": self._values(run_id, ns)}


def _chunk(message_id: str, text: str, call: dict[str, Any] | None = None) -> Message:
    """An `AIMessageChunk`: text, or one tool call (whole: tokentail's calls arrive whole)."""
    chunk: Message = {
        "type": "AIMessageChunk",
        "id": message_id,
        "content": text,
        "additional_kwargs": {},
        "response_metadata": {},
        "tool_calls": [],
        "tool_call_chunks": [],
        "invalid_tool_calls": [],
    }
    if call is not None:
        chunk["tool_calls"] = [call]
        args = json.dumps(call["args"], ensure_ascii=False)
        chunk["tool_call_chunks"] = [
            {"name": call["name"], "args": args, "id": call["id"], "index": 0, "type": "tool_call_chunk"}
        ]
    return chunk
