"""A2A 1.0's task events (what `a2a-sdk` and `@a2a-js/sdk` clients read from SendStreamingMessage and
SubscribeToTask), from a run's stored events.

An A2A task is a run (its id: `task_id(session, run)`, its context: the session). A renderer of one run
builds the Task as the run's events make it and the events that change it:

    run.queued            the Task is made: submitted, its history the user's message (generation 1)
    run.started           status working (a first start; a takeover or a resume adds nothing)
    message.delta         an artifact update of the `answer` artifact: the first text makes it
                          (append false), the rest append (one part each, as A2A streams text); a
                          stream whose opening Task holds text already gets appends only
    status                status working, with the agent's text as the status message
    input.required        status input_required, the question as the status message (its prompt as
                          text, then a data part: inputId, kind, schema, callId); the stream ends
                          there, as A2A's own servers end it, unless the question is answered
    input.received        status working, the answer as a user message (added to the history)
    run.retrying/continued  what a takeover drops: the `answer` artifact sent again whole (append
                          false), as the run still shows it; nothing if it drops no text
    run.completed         status completed
    run.failed            status failed, the error as the status message
    run.cancelled         status canceled
    gap                   a status update with the state unchanged and the gap in its metadata
    reasoning, tools, data  nothing (A2A has no such parts of a task)
    run.spawned           of the task's run: a status update (state unchanged) whose metadata names
                          its children (`SUBTASKS_EXTENSION`: each's taskId, agent, name, state);
                          again when a child asks, is answered, or ends
    a child run's own     nothing in its parent's task: a child is a task of its own, in the same
                          context, its first message naming its parent (`referenceTaskIds`); its
                          `run.spawned` opens it as `run.queued` opens a session's run

Every event, and the Task, carries tokentail's resume extension in its metadata (`RESUME_EXTENSION`:
`eventId` and `generation`). `generation` is the A2A 1.1 draft's (a2aproject/A2A#1810): 1 when the
task is made, one more for each event, so a client that saw N and then gets N+2 knows it missed one,
and a stream that ends on a state that is not final was cut. The event id is the generation as a
string: a subscribe with `Last-Event-ID: N` gets the Task as it was at N, then every event after N.
Both are functions of the stored events, read from the run's start, so any gateway numbers them the
same.
"""

from typing import Any, assert_never

from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf.struct_pb2 import Struct, Value  # type: ignore[import-untyped]
from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]

from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.renderer import Renderer
from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import InputRequired, RunCancelled, RunCompleted, RunFailed, RunSpawned
from tokentail.shared.vocabulary.response_ids import task_id as task_id_of

# tokentail's resume extension: declared in the agent card, its values in each event's metadata.
RESUME_EXTENSION = "urn:tokentail:a2a:resume:v1"
# tokentail's sub-task extension (A2A has no parent field: cascading cancel is proposed as an extension
# in a2aproject/A2A#2119, with no URI yet): a parent's metadata names its children, a child's its parent.
SUBTASKS_EXTENSION = "urn:tokentail:a2a:subtasks:v1"
ANSWER_ARTIFACT = "answer"
_SPAWNED = b"run.spawned"

Event = Task | TaskStatusUpdateEvent | TaskArtifactUpdateEvent

TERMINAL = frozenset({TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED})
# A stream ends at these (A2A's own servers end it at input_required too: the client answers by a new message).
FINAL = TERMINAL | {TaskState.TASK_STATE_INPUT_REQUIRED}


class _TaskReducer(Reducer):
    """The reducer of one task's run, which may be a child run: that opens with its `run.spawned` (its
    first event), as a session's own run opens with its `run.queued`."""

    def reduce(self, event: StoredEvent) -> list[op.Operation]:
        if event.type == _SPAWNED and (spawned := RunSpawned.model_validate_json(event.data)).run_id == self.run_id:
            self.event_ts = event.ts_us / 1e6
            return [op.RunOpened(spawned.run_id, spawned.input, event.seq)]
        return super().reduce(event)


class A2AEvents(Renderer[Event], op.OperationCases[list[Event]]):
    """One task (run `run_id` of session `context_id`) as A2A's events.

    `after`: the generation the client has (a subscribe's `Last-Event-ID`): the stream opens with the
    Task as it was then, and goes on with the events after it. None: it opens with the Task as the
    stream's first batch leaves it (the current Task). `answered`: the input ids of the questions
    answered when the stream opened, which do not end it. `parent_task_id`: the task whose run
    started this one, for a child run's task."""

    def __init__(
        self,
        task_id: str,
        context_id: str,
        run_id: str,
        after: int | None = None,
        answered: tuple[str, ...] = (),
        parent_task_id: str | None = None,
    ) -> None:
        super().__init__(_TaskReducer(run_id, answered=answered))
        self.task_id = task_id
        self.context_id = context_id
        self.parent_task_id = parent_task_id
        self.children: dict[str, dict[str, str]] = {}  # by run id: each child's task as the metadata names it
        self.after = after
        self.opened = False  # the Task that opens the stream was given out
        self.generation = 0
        self.state: TaskState = TaskState.TASK_STATE_SUBMITTED
        self.message: Message | None = None
        self.timestamp = 0.0
        self.text: list[str] = []  # the `answer` artifact's parts
        self.history: list[Message] = []
        self._waiting_on: dict[str, InputRequired] = {}  # the questions asked and not answered yet, in order
        self._opening: list[Event] = []
        self.gapped = False  # a gap was found before any of the task's events (its start was trimmed)
        self._gap_note: dict[str, Any] | None = None  # a gap found before the opening Task, which tells it

    # -- what the handler reads -------------------------------------------------------------------

    def events(self, batch: Batch) -> list[Event]:
        """What a batch of stored events becomes for the client: the Task that opens the stream (once),
        then the events after it."""
        self._opening = []
        out = [event for parts, _ in self.rendered(batch) for event in parts]
        if self.after is None:  # the Task opening the stream has what the batch did
            self.after, out = self.generation, []
        if not self.opened and self.generation >= self.after and (self.generation or self.gapped):
            return [*self._opening, self._open(), *out]
        return [*self._opening, *out]

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def task(self, history_length: int | None = None) -> Task:
        """The Task as the events so far make it."""
        status = TaskStatus(state=self.state, timestamp=_timestamp(self.timestamp))
        if self.message is not None:
            status.message.CopyFrom(self.message)
        history = self.history if history_length is None else self.history[-history_length:] if history_length else []
        task = Task(id=self.task_id, context_id=self.context_id, status=status, history=history)
        if self.text:
            task.artifacts.append(_artifact(["".join(self.text)]))
        task.metadata.update(self._resume() | self._tree())
        return task

    # -- the run's operations ---------------------------------------------------------------------

    def render(self, operation: op.Operation) -> list[Event]:
        if isinstance(operation, op.GapFound) or operation.run_id == self.reducer.run_id:
            return self.cases(operation)
        match operation:  # a child run's own: its task shows it (and its children's starts and ends)
            case op.QuestionAsked(run_id=run_id, answered=False) if run_id in self.children:
                return self._child_is(run_id, TaskState.TASK_STATE_INPUT_REQUIRED)
            case op.QuestionAnswered(run_id=run_id, waiting_for=[]) if run_id in self.children:
                return self._child_is(run_id, TaskState.TASK_STATE_WORKING)
        return []

    def on_run(self, operation: op.RunOperation) -> list[Event]:
        match operation:
            case op.RunOpened(input=text):
                self.generation, self.timestamp = 1, self.reducer.event_ts
                self.history = [self._message(Role.ROLE_USER, text, f"in-{operation.seq}")]
                if self.parent_task_id is not None:  # a child's task: its first message names its parent's
                    self.history[0].reference_task_ids.append(self.parent_task_id)
                return []
            case op.AttemptStarted():
                return (
                    self._status(TaskState.TASK_STATE_WORKING) if self.state == TaskState.TASK_STATE_SUBMITTED else []
                )
            case op.ContentDropped(kept=kept):
                text = "".join(item.text for item in kept if isinstance(item, op.BlockAppended) and item.kind == "text")
                return [] if text == "".join(self.text) else self._appended(text, replacing=True)
            case op.RunEnded(ending=ending):
                return self._ended(ending)
            case _:
                assert_never(operation)

    def on_block(self, operation: op.BlockOperation) -> list[Event]:
        if isinstance(operation, op.BlockAppended) and operation.kind == "text":
            return self._appended(operation.text)
        return []  # text is the artifact's; reasoning is not shown

    def on_tool(self, operation: op.ToolOperation) -> list[Event]:
        return []  # A2A has no such parts of a task

    def on_shown(self, operation: op.ShownOperation) -> list[Event]:
        match operation:
            case op.StatusShown(text=text, seq=seq):
                return self._status(self.state, self._message(Role.ROLE_AGENT, text, f"status-{seq}"))
            case op.SteerShown(status="accepted", input=text, seq=seq):  # what a person added, as their message
                said = self._message(Role.ROLE_USER, text, f"steer-{seq}")
                self.history.append(said)
                return self._status(self.state, said)
            case op.SteerShown() | op.DataShown():
                return []  # A2A has no data parts of a task
            case _:
                assert_never(operation)

    def on_question(self, operation: op.QuestionOperation) -> list[Event]:
        match operation:
            case op.QuestionAsked(question=question, stops=stops, seq=seq):
                self._waiting_on[question.input_id] = question
                events = self._status(TaskState.TASK_STATE_INPUT_REQUIRED, self._questions(seq))
                self.finished = self.finished or stops  # the last asked at once: the stream ends while it waits
                return events
            case op.QuestionAnswered(input_id=input_id, answer=answer, waiting_for=waiting_for, stops=stops, seq=seq):
                self._waiting_on.pop(input_id, None)
                said = self._message(Role.ROLE_USER, None, f"answer-{seq}", answer)
                self.history.append(said)
                if waiting_for:  # the task still waits: its status shows the questions left
                    self.finished = self.finished or stops
                    return self._status(TaskState.TASK_STATE_INPUT_REQUIRED, self._questions(seq))
                return self._status(TaskState.TASK_STATE_WORKING, said)
            case _:
                assert_never(operation)

    def on_child(self, operation: op.ChildOperation) -> list[Event]:
        if isinstance(operation, op.ChildEnded):
            return self._child_is(operation.child_run_id, _ended_as(operation.ending))
        child, agent, name = operation.child_run_id, operation.agent, operation.name
        self.children[child] = {"taskId": task_id_of(self.context_id, child), "agent": agent, "name": name}
        return self._child_is(child, TaskState.TASK_STATE_WORKING)

    def _child_is(self, child: str, state: TaskState) -> list[Event]:
        """A child's state changed: a status update of this task (its own state as it is) naming it."""
        self.children[child]["state"] = TaskState.Name(state)
        return self._status(self.state, self.message)

    def _ended(self, ending: RunCompleted | RunFailed | RunCancelled) -> list[Event]:
        match ending:
            case RunCompleted():
                return self._status(TaskState.TASK_STATE_COMPLETED)
            case RunFailed(error=error):
                said = self._message(Role.ROLE_AGENT, f"{error.type}: {error.message}", f"error-{self.task_id}")
                return self._status(TaskState.TASK_STATE_FAILED, said)
            case RunCancelled():
                return self._status(TaskState.TASK_STATE_CANCELED)
            case _:
                assert_never(ending)

    # -- the events -------------------------------------------------------------------------------

    def _changing(self) -> None:
        """Before a change: the Task that opens the stream is the one the client has (`after`)."""
        if not self.opened and self.after is not None and self.generation >= self.after:
            self._opening.append(self._open())

    def _open(self) -> Task:
        self.opened = True
        task = self.task()
        if self._gap_note is not None:
            task.metadata.update(self._resume(self._gap_note))
        return task

    def _emitted(self, event: Event) -> list[Event]:
        self.generation += 1
        event.metadata.update(self._resume() | (self._tree() if isinstance(event, TaskStatusUpdateEvent) else {}))
        return [event] if self.after is None or self.generation > self.after else []

    def _status(self, state: TaskState, message: Message | None = None) -> list[Event]:
        self._changing()
        self.state, self.message, self.timestamp = state, message, self.reducer.event_ts
        return self._emitted(self._status_update())

    def _status_update(self) -> TaskStatusUpdateEvent:
        status = TaskStatus(state=self.state, timestamp=_timestamp(self.timestamp))
        if self.message is not None:
            status.message.CopyFrom(self.message)
        return TaskStatusUpdateEvent(task_id=self.task_id, context_id=self.context_id, status=status)

    def on_gap(self, operation: op.GapFound) -> list[Event]:
        """This reader's own news (its position was trimmed away, or never was), not the task's: the
        status as it is, with the gap in its resume metadata, and no generation counted, so that
        every reader and GetTask number the task's events alike."""
        self.gapped, gap = True, operation.gap
        note = {"reason": gap.reason, "firstAvailable": gap.first_available}
        if not self.opened:  # told by the Task that opens the stream, which comes first
            self._gap_note = note
            return []
        event = self._status_update()
        event.metadata.update(self._resume(note))
        return [event]

    def _appended(self, text: str, *, replacing: bool = False) -> list[Event]:
        """The answer artifact's update: `text` added to it, or, `replacing`, all of it (a drop kept that much)."""
        self._changing()
        append = bool(self.text) and not replacing
        if replacing:
            self.text = [text] if text else []
        else:
            self.text.append(text)
        update = TaskArtifactUpdateEvent(
            task_id=self.task_id, context_id=self.context_id, artifact=_artifact([text]), append=append
        )
        return self._emitted(update)

    def _message(self, role: Role, text: str | None, message_id: str, data: Any = None) -> Message:
        message = Message(message_id=message_id, context_id=self.context_id, task_id=self.task_id, role=role)
        if text is not None:
            message.parts.append(Part(text=text))
        elif isinstance(data, str):
            message.parts.append(Part(text=data))
        else:
            message.parts.append(Part(data=_value(data)))
        return message

    def _questions(self, seq: int) -> Message:
        """The questions the task waits on as the status message: for each (several when asked at once),
        its prompt, then what an answer must be (a data part, with the `inputId` an answer names)."""
        message = Message(message_id=f"question-{seq}", context_id=self.context_id, task_id=self.task_id)
        message.role = Role.ROLE_AGENT
        for question in self._waiting_on.values():
            asked = {"inputId": question.input_id, "kind": question.kind, "schema": question.answer_schema}
            if question.call_id is not None:
                asked["callId"] = question.call_id
            message.parts.extend([Part(text=question.prompt), Part(data=_value(asked))])
        return message

    def _tree(self) -> dict[str, Any]:
        """The sub-task extension's metadata: the task's children, and its parent's task, if any."""
        tree: dict[str, Any] = {}
        if self.children:
            tree["children"] = list(self.children.values())
        if self.parent_task_id is not None:
            tree["parentTaskId"] = self.parent_task_id
        return {SUBTASKS_EXTENSION: tree} if tree else {}

    def _resume(self, gap: dict[str, Any] | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {"eventId": str(self.generation), "generation": self.generation}
        return {RESUME_EXTENSION: values | ({"gap": gap} if gap is not None else {})}


def _ended_as(ending: RunCompleted | RunFailed | RunCancelled) -> TaskState:
    match ending:
        case RunCompleted():
            return TaskState.TASK_STATE_COMPLETED
        case RunFailed():
            return TaskState.TASK_STATE_FAILED
        case RunCancelled():
            return TaskState.TASK_STATE_CANCELED
        case _:
            assert_never(ending)


def _artifact(texts: list[str]) -> Artifact:
    return Artifact(artifact_id=ANSWER_ARTIFACT, name=ANSWER_ARTIFACT, parts=[Part(text=text) for text in texts])


def _value(data: Any) -> Value:
    holder = Struct()
    holder.update({"v": data})
    return holder.fields["v"]


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
