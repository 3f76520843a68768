"""A thread's state as LangGraph shows it: `values.messages`, LangChain message dicts built from the
session's stored events through the reducer (gateway/reducer/reducer.py), so tool calls and their
results show as the agent made them.

    run.queued (a run's input)   {"type": "human", "id": human_message_id(run_id), "content": input}
    a text block                 {"type": "ai", "id": ai_message_id(run_id, block_seq), "content": text,
                                  "tool_calls": [...]}: the calls that follow the text, until a result
                                  comes, are the same message's (a call with no text before it opens an
                                  AI message of its own, named by the call's event id)
    tool.completed / .failed     {"type": "tool", "id": tool_message_id(run_id, call_id), "tool_call_id",
                                  "name", "content", "status": "success" | "error"}
    a steer taken in             {"type": "human", "id": "human:<steer_id>", "content": its input}

Reasoning, statuses and `data.*` are no messages (the stream's `custom` mode shows the last two).
Runs rolled back (RunRecord.rolled_back) and child runs are left out of a thread's values; a takeover's
drop (`ContentDropped`) rebuilds the run's messages from what it keeps. The same ids are used in the
`values`, `messages` and `updates` of a stream (render.py) and in the v2 protocol, so a client merges
streamed chunks into the state it read.
"""

import json
from datetime import UTC, datetime
from typing import Any, assert_never

from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import InputRequired
from tokentail.shared.vocabulary.records import Question, RunRecord, SessionRecord
from tokentail.shared.vocabulary.run_tree import descendants

Message = dict[str, Any]


def human_message_id(run_id: str) -> str:
    return f"human:{run_id}"


def ai_message_id(run_id: str, block_seq: int) -> str:
    """An AI message: the run's, opened at event `block_seq` (its first delta, or its first tool call)."""
    return f"ai:{run_id}:{block_seq}"


def tool_message_id(run_id: str, call_id: str) -> str:
    """A tool's result. The run's id is in it: a call id is the agent's, and two runs may make the same
    call with the same id (the scripted model names a call by what it asks)."""
    return f"tool:{run_id}:{call_id}"


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def human_message(message_id: str, text: str) -> Message:
    return {"type": "human", "id": message_id, "content": text, "additional_kwargs": {}, "response_metadata": {}}


def ai_message(message_id: str, text: str = "", tool_calls: list[dict[str, Any]] | None = None) -> Message:
    return {
        "type": "ai",
        "id": message_id,
        "content": text,
        "tool_calls": tool_calls or [],
        "invalid_tool_calls": [],
        "additional_kwargs": {},
        "response_metadata": {},
    }


def tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "name": name, "args": arguments, "type": "tool_call"}


def tool_message(run_id: str, call_id: str, name: str, content: Any, error: bool) -> Message:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return {
        "type": "tool",
        "id": tool_message_id(run_id, call_id),
        "tool_call_id": call_id,
        "name": name,
        "content": text,
        "status": "error" if error else "success",
        "additional_kwargs": {},
        "response_metadata": {},
    }


def interrupt_json(question: InputRequired | Question) -> dict[str, Any]:
    """A question as a LangGraph interrupt: its id the question's `input_id`, its value what was asked."""
    value: dict[str, Any] = {"prompt": question.prompt, "kind": question.kind, "schema": question.answer_schema}
    if question.call_id is not None:
        value["call_id"] = question.call_id
    if question.expires_at is not None:
        value["expires_at"] = question.expires_at
    return {"value": value, "id": question.input_id}


class Conversation(op.OperationCases[list[tuple[Any, ...]]]):
    """The LangChain messages of a session's runs, kept per run, from the reducer's operations.

    `apply` takes one operation and returns what it changed, for a stream (render.py): `("chunk",
    message_id, text)` text added to an AI message, `("call", message_id, call)` a tool call added to one,
    `("done", message)` a message complete (an AI message once anything but its text and calls follows),
    `("reset", run_id)` a drop rebuilt the run's messages."""

    def __init__(self) -> None:
        self.messages: dict[str, list[Message]] = {}
        self._open: dict[str, Message] = {}  # per run: its AI message still taking text or calls
        self._calls: dict[tuple[str, str], str] = {}  # (run, call id) -> the tool's name
        self._steers: dict[str, str] = {}  # steer id -> its input, until taken in
        self.questions: dict[str, list[InputRequired]] = {}  # per run, those asked and not yet answered
        # Runs a drop left with their text open: the attempt that goes on continues that AI message.
        self._going_on: set[str] = set()

    def of(self, run_id: str) -> list[Message]:
        return self.messages.get(run_id, [])

    def apply(self, operation: op.Operation) -> list[tuple[Any, ...]]:
        if isinstance(operation, op.BlockOpened | op.ToolCalled) and operation.run_id in self._going_on:
            self._going_on.discard(operation.run_id)
            if isinstance(operation, op.BlockOpened) and operation.kind == "text":
                return []  # the text the drop kept goes on in the same message
        elif not isinstance(operation, op.GapFound | op.BlockClosed | op.ContentDropped):
            self._going_on.discard(operation.run_id)
        return self.cases(operation)

    def on_run(self, operation: op.RunOperation) -> list[tuple[Any, ...]]:
        match operation:
            case op.RunOpened(run_id=run_id, input=text):
                self.messages[run_id] = [human_message(human_message_id(run_id), text)]
                return [("done", self.messages[run_id][0])]
            case op.AttemptStarted():
                return []
            case op.ContentDropped(run_id=run_id, kept=kept):
                self._going_on.discard(run_id)
                self._open.pop(run_id, None)
                self.messages[run_id] = self.messages.get(run_id, [])[:1]  # its input stays
                for again in kept:
                    self.apply(again)
                last = self.messages[run_id][-1]
                if self._open.get(run_id) is last and not last["tool_calls"]:
                    self._going_on.add(run_id)
                return [("reset", run_id)]
            case op.RunEnded(run_id=run_id):
                return self._ended(run_id)
            case _:
                assert_never(operation)

    def on_block(self, operation: op.BlockOperation) -> list[tuple[Any, ...]]:
        match operation:
            case op.BlockAppended(run_id=run_id, kind="text", text=text):
                appended = self._open.get(run_id)
                if appended is None:
                    return []
                appended["content"] += text
                return [("chunk", appended["id"], text)]
            case op.BlockOpened(run_id=run_id, kind="text", block=block):
                changes = self._finish(run_id)
                message = self._open[run_id] = ai_message(ai_message_id(run_id, block))
                self._list(run_id).append(message)
                return changes
            case op.BlockAppended() | op.BlockOpened() | op.BlockClosed():
                return []  # reasoning is not among LangChain's messages; a message ends at what follows
            case _:
                assert_never(operation)

    def on_tool(self, operation: op.ToolOperation) -> list[tuple[Any, ...]]:
        match operation:
            case op.ToolCalled(run_id=run_id, call_id=call_id, name=name, arguments=arguments, seq=seq):
                called = self._open.get(run_id)
                if called is None:
                    called = self._open[run_id] = ai_message(ai_message_id(run_id, seq))
                    self._list(run_id).append(called)
                call = tool_call(call_id, name, arguments)
                called["tool_calls"].append(call)
                self._calls[run_id, call_id] = name
                return [("call", called["id"], call)]
            case op.ToolFinished(run_id=run_id, call_id=call_id, result=result):
                return self._result(run_id, call_id, result, error=False)
            case (
                op.ToolFailedOp(run_id=run_id, call_id=call_id, error=error)
                | op.ToolDenied(run_id=run_id, call_id=call_id, error=error)
            ):
                return self._result(run_id, call_id, error, error=True)
            case _:
                assert_never(operation)

    def on_shown(self, operation: op.ShownOperation) -> list[tuple[Any, ...]]:
        match operation:
            case op.SteerShown(steer_id=steer_id, status="accepted", input=text):
                self._steers[steer_id] = text or ""
            case op.SteerShown(run_id=run_id, steer_id=steer_id, status="applied"):
                changes = self._finish(run_id)
                steer = human_message(f"human:{steer_id}", self._steers.pop(steer_id, ""))
                self._list(run_id).append(steer)
                return [*changes, ("done", steer)]
        return []  # a status, data, a steer refused: not among the messages

    def on_question(self, operation: op.QuestionOperation) -> list[tuple[Any, ...]]:
        run_id = operation.run_id
        if isinstance(operation, op.QuestionAsked):
            if not operation.answered:
                self.questions.setdefault(run_id, []).append(operation.question)
            return self._finish(run_id)
        self.questions[run_id] = [
            asked for asked in self.questions.get(run_id, []) if asked.input_id != operation.input_id
        ]
        return []

    def on_child(self, operation: op.ChildOperation) -> list[tuple[Any, ...]]:
        child = operation.child_run_id
        if isinstance(operation, op.ChildEnded):
            return self._ended(child)
        self.messages[child] = [human_message(human_message_id(child), operation.input)]
        return []

    def on_gap(self, operation: op.GapFound) -> list[tuple[Any, ...]]:
        return []

    def _ended(self, run_id: str) -> list[tuple[Any, ...]]:
        self.questions.pop(run_id, None)
        return self._finish(run_id)

    def _list(self, run_id: str) -> list[Message]:
        return self.messages.setdefault(run_id, [])

    def _finish(self, run_id: str) -> list[tuple[Any, ...]]:
        message = self._open.pop(run_id, None)
        return [] if message is None else [("done", message)]

    def _result(self, run_id: str, call_id: str, result: Any, *, error: bool) -> list[tuple[Any, ...]]:
        changes = self._finish(run_id)
        message = tool_message(run_id, call_id, self._calls.get((run_id, call_id), ""), result, error)
        self._list(run_id).append(message)
        return [*changes, ("done", message)]


def shown_runs(session: SessionRecord, before: int | None = None) -> list[RunRecord]:
    """The runs a thread's messages show: its own (not a child's), not rolled back, in order; with
    `before`, those queued before that event id."""
    return [
        run
        for run in session.runs
        if run.in_conversation and run.queued_seq is not None and (before is None or run.queued_seq < before)
    ]


def conversation_of(events: list[StoredEvent]) -> Conversation:
    """The conversation of every run of a session's events, read from its first."""
    reducer, conversation = Reducer(), Conversation()
    for event in events:
        for operation in reducer.reduce(event):
            conversation.apply(operation)
    return conversation


def values_of(conversation: Conversation, runs: list[RunRecord]) -> dict[str, Any]:
    return {"messages": [message for run in runs for message in conversation.of(run.run_id)]}


def thread_values(session: SessionRecord, events: list[StoredEvent]) -> dict[str, Any]:
    """The thread's `values`: `{"messages": [...]}` of its runs, read from the session's events."""
    return values_of(conversation_of(events), shown_runs(session))


def waiting_questions(session: SessionRecord) -> list[Question]:
    """The questions the thread's active run waits for: its own, or its child runs' (docs/subagents.md)."""
    run = session.active_run
    if run is None:
        return []
    tree = [run, *descendants(session.runs, run.run_id)]
    return [question for waiting in tree for question in waiting.questions]


def thread_interrupts(session: SessionRecord) -> list[dict[str, Any]]:
    return [interrupt_json(question) for question in waiting_questions(session)]


def checkpoint_name(session: SessionRecord, seq: int) -> str:
    """The id of the checkpoint at event `seq` of `session` (a thread's session, or one of its branches):
    the event id where the thread's own session made that event, else `<seq>@<the branch that made it>`;
    a branch's copies of its source's events keep their ids (checkpoints.py)."""
    root = session.lineage[0].session_id if session.lineage else session.session_id
    origin = next((made.session_id for made in session.lineage if seq <= made.event_id), session.session_id)
    return str(seq) if origin == root else f"{seq}@{origin}"


def checkpoint(thread_id: str, checkpoint_id: str) -> dict[str, Any]:
    """A checkpoint as LangGraph names one: tokentail's is an event of the thread (`checkpoint_name`)."""
    return {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id, "checkpoint_map": None}
