"""A session's sub-agent tree (docs/subagents.md) as the AI SDK shows a sub-agent: the child run is
its parent's tool call, whose output is the child's own `UIMessage`, sent as preliminary outputs
while the child streams and once more, final, when it ends (ai-sdk.dev/v7/docs/agents/subagents:
the tool yields `readUIMessageStream`'s snapshots).

Each output is a whole snapshot (the SDK replaces a tool part's output), so a client needs only the
last: what changed in a read of the stream goes out once, at the end of that read or before the next
part of the run's own, not once per token. A whole snapshot after every read would cost a client the
square of what the child wrote (a 200 KB answer: 40 MB), so past its first `FREE_CHARS` a child's
next preliminary output waits until the child added at least `1/GROWTH` of what it showed beyond
them: snapshots grow geometrically, and what a client receives of a child stays within about
`GROWTH + 2` times what it wrote (tests/unit/gateway/protocols/ai_sdk/test_ai_sdk_subagents.py). A
question goes out at once (the child waits for its answer), and the end with the whole final message.
A grandchild is a tool call of its parent's message, its own message the output of that call's part,
and so on down.
"""

from dataclasses import dataclass, field
from typing import Any, assert_never

from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.vocabulary.events import RunCancelled, RunCompleted, RunFailed

Part = dict[str, Any]

FREE_CHARS = 4096  # what a child shows before its snapshots are spaced out: a short child streams each read
GROWTH = 4  # past them, a snapshot waits for the child to add 1/GROWTH of what it showed at the last one
PART_CHARS = 64  # what a change other than text is taken to add (a part's JSON, about)


@dataclass(slots=True)
class _Child:
    parent: str
    call_id: str  # the parent's tool call it is the output of
    children: dict[str, str] = field(default_factory=dict)  # its own children: call id -> run id
    ended: op.ChildEnded | None = None
    # A top child's (the run's own tool call): what its tree showed, about, in characters, now and
    # at its last output sent; and whether its next output is due at once (a question, its start).
    shown: int = 0
    shown_when_sent: int = 0
    urgent: bool = True


class ChildMessages:
    """The child runs of the run a stream shows, and which changed since their last output."""

    def __init__(self, reducer: Reducer) -> None:
        self._reducer = reducer
        self._children: dict[str, _Child] = {}
        self._changed: dict[str, None] = {}  # the run's own children (tool calls of its message) to send, in order
        self._final: dict[str, Part] = {}  # the final outputs of the run's tool calls a child's end gave
        self._sent: dict[str, Part] = {}  # the last message sent of each

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._children

    def started(self, operation: op.ChildStarted) -> list[Part]:
        self._children[operation.child_run_id] = _Child(operation.run_id, operation.call_id)
        if (parent := self._children.get(operation.run_id)) is not None:
            parent.children[operation.call_id] = operation.child_run_id
        self.changed(operation)
        return []

    def changed(self, operation: op.Operation) -> None:
        """Something a child (or one of its own) shows changed: its top one's output is due, at once
        or once the child added enough (see the module's docstring)."""
        if isinstance(operation, op.GapFound):
            return  # (no run's)
        run_id = operation.child_run_id if isinstance(operation, op.ChildStarted | op.ChildEnded) else operation.run_id
        while (child := self._children.get(run_id)) is not None and child.parent in self._children:
            run_id = child.parent
        if (top := self._children.get(run_id)) is None:
            return
        top.shown += len(operation.text) if isinstance(operation, op.BlockAppended) else PART_CHARS
        top.urgent |= isinstance(operation, op.QuestionAsked | op.QuestionAnswered)
        self._changed[run_id] = None

    def all_changed(self) -> None:
        """The run's own parts were shown again (a takeover's reset-step drops its outputs with them)."""
        for run_id, child in self._children.items():
            if child.parent not in self._children and child.ended is None:
                self._changed[run_id] = None
                self._sent.pop(run_id, None)
                child.urgent = True

    def ended(self, operation: op.ChildEnded) -> list[Part]:
        """A child's end: its final output (an error's text for one failed or cancelled); for a top
        one, the run's tool call's, which its parent's own `tool.completed` then does not repeat."""
        child = self._children[operation.child_run_id]
        child.ended = operation
        if child.parent in self._children:
            self.changed(operation)  # a grandchild: shown in its parent's message
            return []
        self._changed.pop(operation.child_run_id, None)
        self._sent.pop(operation.child_run_id, None)
        if isinstance(operation.ending, RunCompleted):
            output = self.message(operation.child_run_id)
            final = {"type": "tool-output-available", "toolCallId": child.call_id, "output": output}
        else:
            final = {"type": "tool-output-error", "toolCallId": child.call_id, "errorText": _error(operation)}
        self._final[child.call_id] = final
        return [final]

    def final(self, call_id: str) -> list[Part] | None:
        """The final output a child's end gave the run's tool call `call_id` (None: no child's)."""
        final = self._final.get(call_id)
        return None if final is None else [final]

    def due(self) -> list[Part]:
        """The preliminary outputs of the children whose message changed since their last, those due
        now; the others wait for more (`_spaced_out`)."""
        parts: list[Part] = []
        for run_id in list(self._changed):
            child = self._children[run_id]
            if self._spaced_out(child):
                continue
            del self._changed[run_id]
            child.urgent, child.shown_when_sent = False, child.shown
            message = self.message(run_id)
            if self._sent.get(run_id) != message:  # an event that shows nothing (a start) sends nothing
                self._sent[run_id] = message
                parts.append(
                    {
                        "type": "tool-output-available",
                        "toolCallId": child.call_id,
                        "output": message,
                        "preliminary": True,
                    }
                )
        return parts

    @staticmethod
    def _spaced_out(child: _Child) -> bool:
        """Whether the child's next snapshot waits: it added less than 1/GROWTH of what it showed past
        FREE_CHARS at its last (so that each costs at most GROWTH times what the child wrote since)."""
        added = child.shown - child.shown_when_sent
        return not child.urgent and added * GROWTH < child.shown_when_sent - FREE_CHARS

    def message(self, run_id: str) -> Part:
        """The child's `UIMessage` as `readUIMessageStream` would have built it from its own stream."""
        built = _MessageParts(self, self._children[run_id])
        for shown in self._reducer.shown(run_id):
            built.cases(shown)
        return {"id": run_id, "role": "assistant", "parts": built.parts}

    def nested(self, part: Part, run_id: str) -> None:
        """A grandchild's message as the output of its call's part: preliminary until it ends."""
        ended = self._children[run_id].ended
        if ended is None:
            part |= {"state": "output-available", "output": self.message(run_id), "preliminary": True}
        elif isinstance(ended.ending, RunCompleted):
            part |= {"state": "output-available", "output": self.message(run_id), "preliminary": False}
        else:
            part |= {"state": "output-error", "errorText": _error(ended)}


class _MessageParts(op.OperationCases[None]):
    """A child's message's parts, built as the AI SDK's client builds them from its stream."""

    def __init__(self, messages: ChildMessages, child: _Child) -> None:
        self.messages, self.child = messages, child
        self.parts: list[Part] = []
        self.tools: dict[str, Part] = {}

    def on_block(self, operation: op.BlockOperation) -> None:
        match operation:
            case op.BlockOpened(kind=kind):
                self.parts.append({"type": kind, "text": "", "state": "streaming"})
            case op.BlockAppended(text=text):
                self.parts[-1]["text"] = text
            case op.BlockClosed():
                self.parts[-1]["state"] = "done"
            case _:
                assert_never(operation)

    def on_tool(self, operation: op.ToolOperation) -> None:
        call_id, tools, children = operation.call_id, self.tools, self.child.children
        match operation:
            case op.ToolCalled(name=name, arguments=arguments):
                part = tools[call_id] = {"type": f"tool-{name}", "toolCallId": call_id, "state": "input-available"}
                part["input"] = arguments
                self.parts.append(part)
                if (grandchild := children.get(call_id)) is not None:
                    self.messages.nested(part, grandchild)
            case op.ToolFinished(result=result):
                if call_id in tools and call_id not in children:
                    tools[call_id] |= {"state": "output-available", "output": result, "preliminary": False}
            case op.ToolFailedOp(error=error) | op.ToolDenied(error=error):
                if call_id in tools and call_id not in children:
                    state = "output-denied" if isinstance(operation, op.ToolDenied) else "output-error"
                    tools[call_id] |= {"state": state, "errorText": error}
            case _:
                assert_never(operation)

    def on_shown(self, operation: op.ShownOperation) -> None:
        match operation:
            case op.StatusShown(text=text):
                self.parts = [part for part in self.parts if part.get("id") != "status"]
                self.parts.append({"type": "data-status", "id": "status", "data": {"text": text}})
            case op.DataShown(name=name, data=data):
                self.parts.append({"type": f"data-{name}", "data": data})
            case op.SteerShown():
                pass  # the child's steers are not among its parts
            case _:
                assert_never(operation)

    def on_question(self, operation: op.QuestionOperation) -> None:
        if isinstance(operation, op.QuestionAsked):
            question = operation.question
            asked = {"input_id": question.input_id, "kind": question.kind, "prompt": question.prompt}
            self.parts.append({"type": "data-input", "id": question.input_id, "data": {**asked, "answer": None}})
            return
        for part in self.parts:
            if part.get("id") == operation.input_id and part["type"] == "data-input":
                part["data"] = {**part["data"], "answer": operation.answer}

    def on_run(self, operation: op.RunOperation) -> None:
        pass  # a child's message has no start or end of its own (its call's output says it)

    def on_child(self, operation: op.ChildOperation) -> None:
        pass  # a grandchild is its call's output (`on_tool`)

    def on_gap(self, operation: op.GapFound) -> None:
        pass


def _error(ended: op.ChildEnded) -> str:
    ending = ended.ending
    if isinstance(ending, RunFailed):
        return f"{ending.error.type}: {ending.error.message}"
    return f"cancelled: {ending.reason}" if isinstance(ending, RunCancelled) else ""
