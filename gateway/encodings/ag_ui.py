"""AG-UI 1.0 events (what CopilotKit and `@ag-ui/client` read) from a session's stored events.

    run.queued / run.started  RUN_STARTED (once per run: the first of the two it sees)
    message.delta             TEXT_MESSAGE_START (once per block), TEXT_MESSAGE_CONTENT
    reasoning.delta           REASONING_START, REASONING_MESSAGE_START, REASONING_MESSAGE_CONTENT
    tool.started              TOOL_CALL_START, TOOL_CALL_ARGS (the whole arguments), TOOL_CALL_END
    tool.completed / .failed  TOOL_CALL_RESULT (a failure's content is {"error": ...})
    status, data.<name>       CUSTOM {name: "status" | <name>, value}
    run.retrying              MESSAGES_SNAPSHOT: the thread without the dead attempt
    run.continued             nothing, or when it drops the text of a model turn a crash cut,
                              MESSAGES_SNAPSHOT: the thread with the run's messages it keeps
    run.completed             RUN_FINISHED {outcome: success, usage}
    run.cancelled             RUN_FINISHED {outcome: cancelled}
    run.failed                RUN_ERROR {message, code: the error's type}
    input.required            RUN_FINISHED {outcome: interrupt, interrupts: [the question]}: the run waits;
                              `RunAgentInput.resume` answers it, and the run goes on as a new AG-UI run
    gap                       CUSTOM {name: "gap", value: {reason, first_available}}

Each frame is `data: <json>` and the last frame an event became carries its `id:`, so an
EventSource (or any reader) that reconnects with `Last-Event-ID` continues after what it fully has.
Ids of messages are made from event ids, so a replay gives a client the same messages again. A
thread's messages (for the snapshots) start from the session's record and follow the runs.
"""

from datetime import UTC, datetime
from typing import Any

from ag_ui.core import (
    AssistantMessage,
    BaseEvent,
    CustomEvent,
    Interrupt,
    Message,
    MessagesSnapshotEvent,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    RunErrorEvent,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    TokenUsage,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    UserMessage,
)

from tokentail.gateway.encodings.translation import Translation, compact
from tokentail.shared.events import Gap
from tokentail.shared.records import RunRecord


def thread_messages(runs: list[RunRecord]) -> list[Message]:
    """The thread as AG-UI messages: each finished run's input and answer (text only)."""
    messages: list[Message] = []
    for run in runs:
        messages.append(UserMessage(id=f"{run.run_id}-input", content=run.input))
        if run.output is not None:
            messages.append(AssistantMessage(id=run.run_id, content=run.output))
    return messages


Part = str  # an event as JSON


class AgUiEvents(Translation[Part]):
    def __init__(
        self,
        thread_id: str,
        history: list[Message],
        run_id: str | None = None,
        quiet_until: int = 0,
        snapshot_first: bool = False,
        answered: frozenset[str] = frozenset(),
        continuing: bool = False,
        before: str = "",
    ) -> None:
        """`thread_id` as the client named it; `history`: the thread's messages before the first
        run this stream shows; `snapshot_first`: open that run with the thread so far (a client
        connecting mid-run rebuilds its messages from it rather than doubling what it holds);
        `answered`: the input ids of questions answered when the stream opens (a replay goes past
        them: only a question still waiting interrupts the run); `continuing`: the stream goes on with
        run `run_id` after an answer (`RunAgentInput.resume`), as a run of its own, after `before`:
        the text the run streamed before the question (what a retry keeps)."""
        super().__init__(run_id, quiet_until)
        self.thread_id = thread_id
        self._messages = list(history)
        self._snapshot_first = snapshot_first
        self._inputs: dict[str, str] = {}  # of runs queued, not yet shown
        self._run: str | None = None  # the run being shown: runs of a session go one at a time
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", message id)
        self._last_text: str | None = None  # the message a tool call belongs to
        self._answered = answered
        self._continuing = continuing
        # The run's text messages: this attempt's since its last question, and those before it, which
        # a retry keeps (an attempt after an answer goes on from the question, not from the start).
        self._said: dict[str, str] = {}
        self._kept: list[Message] = [AssistantMessage(id=f"{run_id}-asked", content=before)] if before else []

    def head(self, gap: Gap | None) -> bytes:
        if not self._continuing or self.run_id is None:
            return super().head(gap)
        self._run = self.run_id
        return self.frames(_parts(RunStartedEvent(thread_id=self.thread_id, run_id=self.run_id)), None) + super().head(
            gap
        )

    def frames(self, parts: list[Part], seq: int | None) -> bytes:
        lines = [f"data: {part}\n\n" for part in parts]
        if seq is not None:
            lines[-1] = f"id: {seq}\n{lines[-1]}"
        return "".join(lines).encode()

    def on_gap(self, gap: Gap) -> list[Part]:
        return _parts(CustomEvent(name="gap", value=gap.model_dump()))

    def on_data(self, name: str, data: dict[str, Any], seq: int) -> list[Part]:
        return _parts(CustomEvent(name=name, value=data["data"])) if self._shows(data) else []

    def on_queued(self, data: dict[str, Any], seq: int) -> list[Part]:
        self._inputs[data["run_id"]] = data["input"]
        return self._begin(data["run_id"]) if self._run is None else []

    def on_started(self, data: dict[str, Any], seq: int) -> list[Part]:
        return self._begin(data["run_id"]) if self._run is None else []

    def on_text(self, data: dict[str, Any], seq: int) -> list[Part]:
        if not self._shows(data):
            return []
        events: list[BaseEvent] = []
        if self._open is None or self._open[0] != "text":
            events = self._close()
            self._open = ("text", f"{data['run_id']}-{seq}")
            self._last_text = self._open[1]
            events.append(TextMessageStartEvent(message_id=self._open[1], role="assistant"))
        if data["text"]:
            events.append(TextMessageContentEvent(message_id=self._open[1], delta=data["text"]))
            self._said[self._open[1]] = self._said.get(self._open[1], "") + data["text"]
        return _parts(*events)

    def on_reasoning(self, data: dict[str, Any], seq: int) -> list[Part]:
        if not self._shows(data):
            return []
        events: list[BaseEvent] = []
        if self._open is None or self._open[0] != "reasoning":
            events = self._close()
            self._open = ("reasoning", f"{data['run_id']}-{seq}")
            events += [
                ReasoningStartEvent(message_id=self._open[1]),
                ReasoningMessageStartEvent(message_id=self._open[1]),
            ]
        if data["text"]:
            events.append(ReasoningMessageContentEvent(message_id=self._open[1], delta=data["text"]))
        return _parts(*events)

    def on_status(self, data: dict[str, Any], seq: int) -> list[Part]:
        return _parts(CustomEvent(name="status", value={"text": data["text"]})) if self._shows(data) else []

    def on_tool_started(self, data: dict[str, Any], seq: int) -> list[Part]:
        if not self._shows(data):
            return []
        call_id = data["call_id"]
        return _parts(
            *self._close(),
            ToolCallStartEvent(tool_call_id=call_id, tool_call_name=data["name"], parent_message_id=self._last_text),
            ToolCallArgsEvent(tool_call_id=call_id, delta=compact(data["arguments"])),
            ToolCallEndEvent(tool_call_id=call_id),
        )

    def on_tool_completed(self, data: dict[str, Any], seq: int) -> list[Part]:
        result = data["result"]
        return self._tool_result(data, result if isinstance(result, str) else compact(result))

    def on_tool_failed(self, data: dict[str, Any], seq: int) -> list[Part]:
        return self._tool_result(data, compact({"error": data["error"]}))

    def on_retrying(self, data: dict[str, Any], seq: int) -> list[Part]:
        if not self._shows(data):
            return []
        self._last_text = None
        self._said = {}
        return _parts(*self._close(), MessagesSnapshotEvent(messages=[*self._messages, *self._kept]))

    def on_continued(self, data: dict[str, Any], seq: int) -> list[Part]:
        keep_until = data["from_event_id"]
        dropped = [message_id for message_id in self._said if _seq_of(message_id) > keep_until]
        open_dropped = self._open is not None and _seq_of(self._open[1]) > keep_until
        if not self._shows(data) or not (dropped or open_dropped):
            return []  # nothing dropped: the run goes on in the open message
        for message_id in dropped:
            del self._said[message_id]
        if self._last_text in dropped:
            self._last_text = None
        said = [AssistantMessage(id=message_id, content=text) for message_id, text in self._said.items()]
        return _parts(*self._close(), MessagesSnapshotEvent(messages=[*self._messages, *self._kept, *said]))

    def on_completed(self, data: dict[str, Any], seq: int) -> list[Part]:
        if not self._shows(data):
            return []
        self._forget_run()
        usage = data["usage"]
        counts = {name: usage[name] for name in ("input_tokens", "output_tokens") if isinstance(usage.get(name), int)}
        self._messages.append(AssistantMessage(id=data["run_id"], content=data["output"]))
        finished = RunFinishedEvent(
            thread_id=self.thread_id,
            run_id=data["run_id"],
            outcome={"type": "success"},
            usage=[TokenUsage(**counts)] if counts else None,
        )
        return self._end(finished)

    def on_failed(self, data: dict[str, Any], seq: int) -> list[Part]:
        if not self._shows(data):
            return []
        self._forget_run()
        return self._end(RunErrorEvent(message=data["error"]["message"], code=data["error"]["type"]))

    def on_cancelled(self, data: dict[str, Any], seq: int) -> list[Part]:
        self._inputs.pop(data["run_id"], None)  # a run cancelled in line never started: nothing to show
        if not self._shows(data):
            return []
        self._forget_run()
        return self._end(
            RunFinishedEvent(thread_id=self.thread_id, run_id=data["run_id"], outcome={"type": "cancelled"})
        )

    def on_input_required(self, data: dict[str, Any], seq: int) -> list[Part]:
        if not self._shows(data):
            return []
        self._kept += [AssistantMessage(id=message_id, content=text) for message_id, text in self._said.items()]
        self._said = {}
        if data["input_id"] in self._answered:
            return []  # a question answered before: the run goes on, as one run
        expires_at = data.get("expires_at")
        interrupt = Interrupt(
            id=data["input_id"],
            reason="approval" if data["kind"] == "approval" else "input_required",
            message=data["prompt"],
            tool_call_id=data.get("call_id"),
            response_schema=data["schema"],
            expires_at=datetime.fromtimestamp(expires_at, UTC).isoformat() if expires_at is not None else None,
            metadata={"kind": data["kind"]},
        )
        outcome = RunFinishedInterruptOutcome(interrupts=[interrupt])
        if self.run_id is not None:
            self.finished = True  # the response ends while the run waits
        return self._end(RunFinishedEvent(thread_id=self.thread_id, run_id=data["run_id"], outcome=outcome))

    def on_input_received(self, data: dict[str, Any], seq: int) -> list[Part]:
        return []  # the run goes on: its next run.started opens it again (or `continuing` did)

    def _shows(self, data: dict[str, Any]) -> bool:
        return self._run is not None and data["run_id"] == self._run

    def _begin(self, run_id: str) -> list[Part]:
        self._run = run_id
        self._last_text = None
        if (text := self._inputs.pop(run_id, None)) is not None:
            self._messages.append(UserMessage(id=f"{run_id}-input", content=text))
        events: list[BaseEvent] = [RunStartedEvent(thread_id=self.thread_id, run_id=run_id)]
        if self._snapshot_first:
            self._snapshot_first = False
            events.append(MessagesSnapshotEvent(messages=self._messages))
        return _parts(*events)

    def _end(self, event: BaseEvent) -> list[Part]:
        parts = _parts(*self._close(), event)
        self._run = None
        return parts

    def _forget_run(self) -> None:
        self._said, self._kept = {}, []

    def _tool_result(self, data: dict[str, Any], content: str) -> list[Part]:
        if not self._shows(data):
            return []
        call_id = data["call_id"]
        return _parts(
            ToolCallResultEvent(message_id=f"{call_id}-result", tool_call_id=call_id, content=content, role="tool")
        )

    def _close(self) -> list[BaseEvent]:
        if self._open is None:
            return []
        kind, message_id = self._open
        self._open = None
        if kind == "text":
            return [TextMessageEndEvent(message_id=message_id)]
        return [ReasoningMessageEndEvent(message_id=message_id), ReasoningEndEvent(message_id=message_id)]


def _seq_of(message_id: str) -> int:
    """The event id a message's id was made from (`<run id>-<seq>`)."""
    return int(message_id.rsplit("-", 1)[1])


def _parts(*events: BaseEvent) -> list[Part]:
    return [event.model_dump_json(by_alias=True, exclude_none=True) for event in events]
