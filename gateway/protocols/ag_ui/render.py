"""AG-UI 1.1 events (what CopilotKit, `@ag-ui/client` and TanStack AI read) from a session's stored events.

    run.queued / run.started  RUN_STARTED {protocolVersion} (once per run: the first of the two it sees)
    message.delta             TEXT_MESSAGE_START (once per block), TEXT_MESSAGE_CONTENT
    reasoning.delta           REASONING_START, REASONING_MESSAGE_START, REASONING_MESSAGE_CONTENT
    tool.started              TOOL_CALL_START, TOOL_CALL_ARGS (the whole arguments), TOOL_CALL_END
    tool.completed / .failed  TOOL_CALL_RESULT (a failure's content is {"error": ...})
    status                    ACTIVITY_SNAPSHOT {activityType: "status", content: {text}}: one message
                              per run, each status replacing the last
    data.<name>               CUSTOM {name, value}
    steer.*                   CUSTOM {name: "steer", value: {steerId, status, input?, reason?}}
    run.retrying              MESSAGES_SNAPSHOT: the thread without anything of the run (it starts
                              over, and streams again what came before an answered question too)
    run.continued             nothing, or when it drops the text of a model turn a crash cut,
                              MESSAGES_SNAPSHOT: the thread with the run's messages it keeps
    run.completed             RUN_FINISHED {outcome: success, usage}
    run.cancelled             RUN_FINISHED {outcome: cancelled}
    run.failed                RUN_ERROR {message, code: the error's type}
    input.required            RUN_FINISHED {outcome: interrupt, interrupts: [the question]}: the run waits;
                              `RunAgentInput.resume` answers it, and the run goes on as a new AG-UI run.
                              Each interrupt carries TanStack AI's binding (tanstack.py), so its client
                              can answer it, tied to a tool call or not
    gap                       CUSTOM {name: "gap", value: {reason, first_available}}
    run.spawned               SUBAGENT_STARTED {subagentRunId: the child's run id, name, parentToolCallId,
                              parentSubagentRunId: its parent's, left out when that is the stream's run}
    a child's events          as above, each tagged `subagentRunId` (its tool call ids prefixed with its
                              run id: ids are the run's, and two runs may name calls alike)
    a child's run.completed   SUBAGENT_FINISHED {outcome: success, result: its output}; its usage counts
                              in the RUN_FINISHED usage of the stream's run
    a child's run.failed /    SUBAGENT_ERROR {message, code: the error's type, or `cancelled`}; children
      run.cancelled           open when their ancestor ends are closed so first (the reducer's ChildEnded)
    a child's input.required  once no other child streams on (an answer may come first: then nothing),
                              RUN_FINISHED {outcome: interrupt}, its interrupts tagged `subagentRunId`,
                              after every open subagent is closed SUBAGENT_FINISHED {outcome: suspended,
                              interruptIds: its own questions}; the next AG-UI run (the answer's)
                              announces again the subagents it goes on with (AG-UI: an id "MAY
                              reappear in a later run")

Every frame is `id: <id>` and `data: <json>`: the last frame a stored event became has the event's id,
the ones before it `<id>.<k>` (the k-th, from 0), so a client that drops ids it has seen (TanStack AI)
keeps each, and one that reconnects with `Last-Event-ID` continues after the frame it has, even within
an event (`Position`). What a stream opens with before any event (the `RUN_STARTED` of a run the
client joins mid-way) has the id of the position the client has (`quiet_until`).
Ids of messages are made from event ids, so a replay gives a client the same messages again. A
thread's messages (for the snapshots) start from the session's record and follow the runs. A stream
that goes on after an answer reads the run from its start, quietly up to the answer, so that a
snapshot after it holds what the run showed before the question.
"""

import re
from datetime import UTC, datetime
from typing import Any, assert_never

from ag_ui.core import (
    ActivitySnapshotEvent,
    AssistantMessage,
    BaseEvent,
    CustomEvent,
    FunctionCall,
    Interrupt,
    Message,
    MessagesSnapshotEvent,
    ReasoningMessageContentEvent,
    RunErrorEvent,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TokenUsage,
    ToolCall,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    ToolMessage,
    UserMessage,
)

from tokentail.gateway.protocols.ag_ui.open_messages import OpenMessages
from tokentail.gateway.protocols.ag_ui.subagents import Subagents, tagged, tokens
from tokentail.gateway.protocols.ag_ui.tanstack import BINDING_KEY, binding
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.renderer import FramedRenderer, Position, compact, frame_ids
from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.vocabulary.events import Ending, Gap, InputRequired, RunCancelled, RunCompleted, RunFailed
from tokentail.shared.vocabulary.records import RunRecord

PROTOCOL_VERSION = "1.1"  # what RUN_STARTED declares: AG-UI's in-band version, MAJOR.MINOR


def protocol_version(client: str | None) -> str:
    """The version a stream declares: the client's own, if it declared an older minor (AG-UI 1.x;
    tokentail sends nothing an older 1.x client lacks), else tokentail's."""
    if client is None or re.fullmatch(r"1\.\d{1,4}", client) is None:
        return PROTOCOL_VERSION
    return client if int(client.split(".")[1]) < int(PROTOCOL_VERSION.split(".")[1]) else PROTOCOL_VERSION


def thread_messages(runs: list[RunRecord]) -> list[Message]:
    """The thread as AG-UI messages: each finished run's input and answer (text only)."""
    messages: list[Message] = []
    for run in runs:
        messages.append(UserMessage(id=f"{run.run_id}-input", content=run.input))
        if run.output is not None:
            messages.append(AssistantMessage(id=run.run_id, content=run.output))
    return messages


Part = str  # an event as JSON


class AgUiEvents(FramedRenderer[Part], op.OperationCases[list[BaseEvent]]):
    def __init__(
        self,
        thread_id: str,
        history: list[Message],
        run_id: str | None = None,
        quiet_until: int = 0,
        snapshot_first: bool = False,
        answered: frozenset[str] = frozenset(),
        continuing: bool = False,
        within: int = 0,
        protocol: str = PROTOCOL_VERSION,
        client_run_id: str | None = None,
    ) -> None:
        """`thread_id` as the client named it; `history`: the thread's messages before the first
        run this stream shows; `quiet_until`: the client has the events up to this id;
        `snapshot_first`: open that run with the thread so far (a client connecting mid-run rebuilds
        its messages from it rather than doubling what it holds); `answered`: the input ids of
        questions answered when the stream opens (a replay goes past them: only a question still
        waiting interrupts the run); `continuing`: the client joins run `run_id` at `quiet_until`
        (after an answer to `RunAgentInput.resume`, a steer, `offset=now`), so the stream opens with
        its RUN_STARTED, as an AG-UI run of its own; `within`: the client has that
        many frames of the event after `quiet_until` too (`Position`); `protocol`: the version
        RUN_STARTED declares (`protocol_version`); `client_run_id`: the run id the client knows the
        stream by (the `runId` it posted, or joined by), which its interrupts' binding names (else
        the run's own)."""
        super().__init__(Reducer(run_id, quiet_until, answered))
        self._has_until = quiet_until  # the client has the events up to it: the id of what opens the stream
        self._had = Position(quiet_until, within)
        self._protocol = protocol
        self._client_run_id = client_run_id
        self.thread_id = thread_id
        self._messages = list(history)
        self._snapshot_first = snapshot_first
        self._continuing = continuing
        self._inputs: dict[str, str] = {}  # of runs queued, not yet shown
        self._run: str | None = None  # the run being shown (the root of its tree): a session's runs go one at a time
        self._last_text: dict[str, str] = {}  # per run, the message its next tool call belongs to
        self._gap: Gap | None = None  # one found before any run: said after its RUN_STARTED
        self._interrupts: list[Interrupt] = []  # of the questions asked at once so far, unanswered
        self._calls: dict[tuple[str, str], op.ToolCalled] = {}  # the tool calls seen, for the approvals that name them
        self._tree = Subagents()  # the child runs seen, as AG-UI subagents
        self._open = OpenMessages()  # in the client's AG-UI run
        self._ending: list[BaseEvent] = []  # what ends the AG-UI run at questions, after the operation's own
        self._stopping = False  # the AG-UI run ends at its questions once its children stop streaming
        # A continuing stream is a new AG-UI run at `quiet_until`: what was open before it, the client's
        # earlier runs held (the reducer's quiet replay reproduces it), not this one.
        self._fresh_after = quiet_until if continuing else None

    def opening(self, gap: Gap | None) -> list[Part]:
        run_id = self.reducer.run_id
        started = _parts(self._started(run_id)) if self._continuing and run_id else []
        return started + super().opening(gap)

    def head(self, gap: Gap | None) -> bytes:
        return self.frames(self.opening(gap), self._has_until)

    def rendered(self, batch: Batch) -> list[tuple[list[Part], int | None]]:
        out = super().rendered(batch)
        if batch.gap is not None and out and out[0][1] is None:  # a gap's frame: after it, what is left
            out[0] = (out[0][0], batch.gap.first_available - 1)
        return out

    def frames(self, parts: list[Part], seq: int | None) -> bytes:
        assert seq is not None  # every frame has an id (`head`, `rendered`)
        return "".join(self._had.unsent(_framed(parts, seq), seq)).encode()

    def render(self, operation: op.Operation) -> list[Part]:
        """The operation's events, after RUN_STARTED for a run first seen mid-way (a stream trimmed
        past its start): every AG-UI event belongs to a run. A child run's are tagged with it, after
        its SUBAGENT_STARTED if the client's AG-UI run has not had it."""
        if isinstance(operation, op.GapFound):
            if self._run is None and not self._continuing:
                self._gap = operation.gap  # said once a run starts
                return []
            return _parts(CustomEvent(name="gap", value=operation.gap.model_dump()))
        if self._fresh_after is not None and operation.seq > self._fresh_after:
            self._tree.new_run()
            self._open.forget()
            self._fresh_after = None
        if isinstance(operation, op.RunOpened):
            self._inputs[operation.run_id] = operation.input
        if isinstance(operation, op.RunEnded) and operation.run_id != self._run:
            self._inputs.pop(operation.run_id, None)  # ended in line, never shown
            return []
        if isinstance(operation, op.ChildStarted):
            self._tree.started(operation)
        root = self._tree.root(operation.run_id)
        begun = self._begin(root)
        if root != self._run:
            return []  # a run queued behind the one shown: its turn comes
        if operation.run_id not in self._tree:
            events = self.cases(operation)
        else:
            announced = self._tree.announce(
                operation.run_id
            )  # before what the operation does: it may end the AG-UI run
            events = [*announced, *(tagged(event, operation.run_id) for event in self.cases(operation))]
        ending, self._ending = self._ending, []
        return begun + _parts(*events, *ending)

    def on_run(self, operation: op.RunOperation) -> list[BaseEvent]:
        match operation:
            case op.RunOpened() | op.AttemptStarted():
                return []  # see render
            case op.ContentDropped(run_id=run_id):
                self._last_text.pop(run_id, None)
                return [MessagesSnapshotEvent(messages=[*self._messages, *self._tree_messages()])]
            case op.RunEnded(ending=ending):
                return self._end(self._ended(ending))
            case _:
                assert_never(operation)

    def on_block(self, operation: op.BlockOperation) -> list[BaseEvent]:
        match operation:
            case op.BlockAppended(run_id=run_id, kind=kind, block=block, text=text):
                # A block of a child streaming on when the AG-UI run ended at a question: opened again.
                message_id = f"{run_id}-{block}"
                opened = [] if message_id in self._open else self._open.opened(run_id, kind, message_id)
                if kind == "text":
                    return [*opened, TextMessageContentEvent(message_id=message_id, delta=text)]
                return [*opened, ReasoningMessageContentEvent(message_id=message_id, delta=text)]
            case op.BlockOpened(run_id=run_id, kind=kind, block=block):
                if kind == "text":
                    self._last_text[run_id] = f"{run_id}-{block}"
                return self._open.opened(run_id, kind, f"{run_id}-{block}")
            case op.BlockClosed(run_id=run_id, block=block):
                return self._open.closed(f"{run_id}-{block}")
            case _:
                assert_never(operation)

    def on_tool(self, operation: op.ToolOperation) -> list[BaseEvent]:
        if not isinstance(operation, op.ToolCalled):
            return [_result(operation, self._tree.call_id(operation.run_id, operation.call_id))]
        run_id = operation.run_id
        self._calls[run_id, operation.call_id] = operation
        call_id = self._tree.call_id(run_id, operation.call_id)
        started = ToolCallStartEvent(
            tool_call_id=call_id, tool_call_name=operation.name, parent_message_id=self._last_text.get(run_id)
        )
        arguments = ToolCallArgsEvent(tool_call_id=call_id, delta=compact(operation.arguments))
        return [started, arguments, ToolCallEndEvent(tool_call_id=call_id)]

    def on_shown(self, operation: op.ShownOperation) -> list[BaseEvent]:
        return [_shown(operation)]

    def on_question(self, operation: op.QuestionOperation) -> list[BaseEvent]:
        match operation:
            case op.QuestionAsked(run_id=run_id, question=question, answered=answered, stops=stops):
                if not answered:
                    call = self._calls.get((run_id, question.call_id or ""))
                    interrupt = _interrupt(question, call, self._client_run_id or self._run or run_id)
                    self._interrupts.append(self._tree.attributed(interrupt, run_id))
                # The run goes on past it (as one AG-UI run, or the next: `continuing`), or more follow.
                return self._interrupted() if stops else []
            case op.QuestionAnswered(input_id=input_id, stops=stops):
                self._interrupts = [interrupt for interrupt in self._interrupts if interrupt.id != input_id]
                self._stopping = self._stopping and bool(self._interrupts)  # answered while others streamed
                return self._interrupted() if stops else []
            case _:
                assert_never(operation)

    def on_child(self, operation: op.ChildOperation) -> list[BaseEvent]:
        announced = self._tree.announce(operation.child_run_id)
        if isinstance(operation, op.ChildStarted):
            return announced
        events = [*announced, self._tree.ended(operation.child_run_id, operation.ending)]
        return events + (self._interrupted() if self._stopping else [])

    def on_gap(self, operation: op.GapFound) -> list[BaseEvent]:
        return []  # see render

    def _ended(self, ending: Ending) -> BaseEvent:
        match ending:
            case RunCompleted(run_id=run_id, output=output, usage=usage):
                self._messages.append(AssistantMessage(id=run_id, content=output))
                counts = tokens(usage, self._tree.usage(run_id))
                outcome = {"type": "success"}
                used = [TokenUsage(**counts)] if counts else None
                return RunFinishedEvent(thread_id=self.thread_id, run_id=run_id, outcome=outcome, usage=used)
            case RunFailed(error=error):
                return RunErrorEvent(message=error.message, code=error.type)
            case RunCancelled(run_id=run_id):
                return RunFinishedEvent(thread_id=self.thread_id, run_id=run_id, outcome={"type": "cancelled"})
            case _:
                assert_never(ending)

    def _tree_messages(self) -> list[Message]:
        """The messages of what the run shown and its children show now (a snapshot restates them all)."""
        messages: list[Message] = []
        for run_id in [self._run or "", *self._tree.of_tree(self._run)]:
            shown, last = _messages_of(self.reducer.shown(run_id), self._tree)
            messages += shown
            self._last_text |= last
        return messages

    # -- the AG-UI run ------------------------------------------------------------------------------

    def _begin(self, run_id: str) -> list[Part]:
        """The run's start, the first time it is seen: RUN_STARTED (sent already when `continuing`)."""
        if self._run is not None:
            return []
        self._run = run_id
        self._last_text = {}
        if (text := self._inputs.pop(run_id, None)) is not None:
            self._messages.append(UserMessage(id=f"{run_id}-input", content=text))
        if self._continuing:
            return []
        events: list[BaseEvent] = [self._started(run_id)]
        if self._snapshot_first:
            self._snapshot_first = False
            events.append(MessagesSnapshotEvent(messages=self._messages))
        if self._gap is not None:
            events.append(CustomEvent(name="gap", value=self._gap.model_dump()))
            self._gap = None
        return _parts(*events)

    def _started(self, run_id: str) -> RunStartedEvent:
        return RunStartedEvent(thread_id=self.thread_id, run_id=run_id, protocol_version=self._protocol)

    def _interrupted(self) -> list[BaseEvent]:
        """The AG-UI run ends at the questions still open (the run waits for their answers), once
        none of its children streams on (until then it goes on, and shows them: an answer may even
        come first): what is still open closed first (the next AG-UI run opens it again), then
        its subagents, as suspended. Said after the operation's own events (`_ending`)."""
        assert self._run is not None
        asking = {interrupt.subagent_run_id or self._run for interrupt in self._interrupts}
        self._stopping = self._tree.streaming(self._run, asking)
        if self._stopping:
            return []
        if self.reducer.run_id is not None:
            self.finished = True  # the response ends while the run waits
        for run_id, closing in self._open.all_closed():
            self._ending += [tagged(event, run_id) for event in closing] if run_id in self._tree else closing
        self._ending += self._tree.suspended(self._interrupts)
        outcome = RunFinishedInterruptOutcome(interrupts=self._interrupts)
        self._interrupts = []
        self._ending += self._end(RunFinishedEvent(thread_id=self.thread_id, run_id=self._run, outcome=outcome))
        return []

    def _end(self, event: BaseEvent) -> list[BaseEvent]:
        self._run = None
        self._continuing = self._stopping = False
        self._tree.new_run()
        self._open.forget()
        return [event]


def _messages_of(kept: tuple[op.Operation, ...], tree: Subagents) -> tuple[list[Message], dict[str, str]]:
    """The messages of what a run keeps after a drop (or shows now), as its events made them (a
    child's tagged with it), and the last text message of the run (its next tool call's)."""
    messages: list[Message] = []
    texts: dict[str, AssistantMessage] = {}
    last: dict[str, str] = {}
    for operation in kept:
        match operation:
            case op.BlockAppended(run_id=run_id, kind="text", block=block, text=text):
                child = run_id if run_id in tree else None
                message = AssistantMessage(id=f"{run_id}-{block}", content=text, subagent_run_id=child)
                texts[message.id] = message
                messages.append(message)
                last[run_id] = message.id
            case op.ToolCalled(run_id=run_id, call_id=call_id, name=name, arguments=arguments):
                call_id = tree.call_id(run_id, call_id)
                call = ToolCall(id=call_id, function=FunctionCall(name=name, arguments=compact(arguments)))
                parent = texts.get(last.get(run_id, ""))
                if parent is not None:
                    parent.tool_calls = [*(parent.tool_calls or []), call]
                else:
                    child = run_id if run_id in tree else None
                    messages.append(AssistantMessage(id=call_id, tool_calls=[call], subagent_run_id=child))
            case op.ToolFinished() | op.ToolFailedOp() | op.ToolDenied():
                result = _result(operation, tree.call_id(operation.run_id, operation.call_id))
                child = operation.run_id if operation.run_id in tree else None
                tool = ToolMessage(
                    id=result.message_id,
                    tool_call_id=result.tool_call_id,
                    content=result.content,
                    subagent_run_id=child,
                )
                messages.append(tool)
    return messages, last


def _shown(operation: op.ShownOperation) -> BaseEvent:
    match operation:
        case op.StatusShown(run_id=run_id, text=text):
            # One activity message per run, its content the latest status (each snapshot replaces it).
            return ActivitySnapshotEvent(message_id=f"{run_id}-status", activity_type="status", content={"text": text})
        case op.DataShown(name=name, data=data):
            return CustomEvent(name=name, value=data)
        case op.SteerShown(steer_id=steer_id, status=status, input=text, reason=reason):
            steer = {"steerId": steer_id, "status": status, "input": text, "reason": reason}
            return CustomEvent(name="steer", value={k: v for k, v in steer.items() if v is not None})
        case _:
            assert_never(operation)


def _result(operation: op.ToolFinished | op.ToolFailedOp | op.ToolDenied, call_id: str) -> ToolCallResultEvent:
    match operation:
        case op.ToolFinished(result=result):
            content = result if isinstance(result, str) else compact(result)
        case op.ToolFailedOp(error=error) | op.ToolDenied(error=error):
            content = compact({"error": error})
    return ToolCallResultEvent(message_id=f"{call_id}-result", tool_call_id=call_id, content=content, role="tool")


def _interrupt(question: InputRequired, call: op.ToolCalled | None, interrupted_run_id: str) -> Interrupt:
    """`metadata`: the question's kind; an approval's tool call (`toolName`, `input`: its arguments),
    which TanStack AI's client shows on the call; and the binding by which that client answers it
    (tanstack.py), in the run the client knows as `interrupted_run_id`."""
    expires_at = question.expires_at
    metadata: dict[str, Any] = {"kind": question.kind}
    if question.kind == "approval" and call is not None:
        metadata |= {"toolName": call.name, "input": call.arguments}
    metadata[BINDING_KEY] = binding(question.input_id, interrupted_run_id, question.answer_schema)
    return Interrupt(
        id=question.input_id,
        reason="approval" if question.kind == "approval" else "input_required",
        message=question.prompt,
        tool_call_id=question.call_id,
        response_schema=question.answer_schema,
        expires_at=datetime.fromtimestamp(expires_at, UTC).isoformat() if expires_at is not None else None,
        metadata=metadata,
    )


def refused(message: str, code: str, last_event_id: int) -> bytes:
    """A stream of one RUN_ERROR: AG-UI's answer to a request it refuses (a stale or partial resume),
    with the id of the thread's last event."""
    return "".join(_framed(_parts(RunErrorEvent(message=message, code=code)), last_event_id)).encode()


def _framed(parts: list[Part], seq: int) -> list[str]:
    """The SSE frames of what event `seq` became: its id on the last, `<seq>.<k>` on those before."""
    return [
        f"id: {frame_id}\ndata: {part}\n\n" for frame_id, part in zip(frame_ids(seq, len(parts)), parts, strict=True)
    ]


def _parts(*events: BaseEvent) -> list[Part]:
    return [event.model_dump_json(by_alias=True, exclude_none=True) for event in events]
