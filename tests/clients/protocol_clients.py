"""What each protocol's client ends up showing: small Python ports of how the real clients fold what they
receive, for the frames tokentail sends. The table of cases (tests/unit/gateway/protocols/test_protocol_cases.py) judges
every encoding by these folds, not by the frames themselves.

- `AiSdkChat`: the message `ai` 7's `AbstractChat` (what `useChat` wraps) builds, as
  `processUIMessageStream` (node_modules/ai/src/ui/process-ui-message-stream.ts) applies the chunks and
  `Chat.makeRequest` starts each response: a send continues the last assistant message (an approval
  answered), a `resumeStream()` with `resumeStreamIsReplay` rebuilds the message from its first `start`.
- `AgUiAgent`: the messages `@ag-ui/client` keeps (its `defaultApplyEvents`), with the order its
  `verifyEvents` enforces on each stream (a `runAgent`/`connectAgent` call; a `TokentailAgent`
  reconnect goes on in the same stream, with the id of the last frame that carried one).
- `ResponsesClient`: the Response `openai`'s stream accumulator keeps
  (src/internal/responses/response-accumulator.ts), one per response of the chain, and each final
  Response (`response.completed` / `.incomplete` / `.failed`).
- `NativeClient`: tokentail's own SSE stream folded by docs/api.md's rule: a run's events kept, what a
  `run.retrying` (all of the run before it) or a `run.continued` (the run's events after
  `from_event_id`) drops dropped.

Each gives a `Shown`: the assistant text (text parts joined), the reasoning, the tool calls with their
outcome (in order, one entry per call shown: a call shown twice is there twice), how the stream ended,
and whether a gap was said. A client that could not apply a frame raises `ClientError`, as the real one
fails its request.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


class ClientError(Exception):
    """A frame the real client would refuse (its request fails)."""


@dataclass(frozen=True)
class Shown:
    text: str = ""
    reasoning: str = ""
    tools: tuple[tuple[str, str], ...] = ()  # (call id, outcome: pending, completed, failed, denied)
    ended: str | None = None  # completed, cancelled, failed, waiting (at a question), or None: still going
    gap: bool = False
    # What it showed on the way that the text shown before did not lead to (a piece streamed that does
    # not follow what the message showed): each says the message, what it showed, and then what.
    glitches: tuple[str, ...] = ()
    # What it showed one after the other (LangGraph's: its text and tool results; a `values` event
    # replaces what chunks showed, so its end alone would not show a piece streamed twice on the way).
    history: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Frame:
    id: str | None
    event: str | None
    data: str


def parse_sse(body: bytes) -> list[Frame]:
    """The frames of an SSE body (comments and `retry:` left out)."""
    frames = []
    for block in body.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = value
        if "data" in fields:
            frames.append(Frame(fields.get("id"), fields.get("event"), fields["data"]))
    return frames


def _outcome_of_result(content: str) -> str:
    try:
        value = json.loads(content)
    except ValueError:
        return "completed"
    return "failed" if isinstance(value, dict) and set(value) == {"error"} else "completed"


# -- the AI SDK's chat ----------------------------------------------------------------------------------


_TOOL_OUTCOMES = {"output-available": "completed", "output-error": "failed", "output-denied": "denied"}


class AiSdkChat:
    """`AbstractChat`'s messages. Call `send()` (a new message, or the chat sent again after an approval
    answered), `answer_approval()` (addToolApprovalResponse, before that send) or `resume()`
    (resumeStream, a replay), then `feed()` the response's frames."""

    def __init__(self) -> None:
        self.messages: list[Json] = [{"id": "user-1", "role": "user", "parts": []}]
        self._message: Json = {}
        self._replay = False
        self._first_start = True
        self._text: dict[str, Json] = {}
        self._reasoning: dict[str, Json] = {}
        self._finish: str | None = None
        self._gap = False
        self._ids = 0
        self._chunks: dict[str, Callable[[Json], None]] = {
            "start": self._start,
            "finish": self._finish_chunk,
            "start-step": lambda c: self._parts.append({"type": "step-start"}),
            "finish-step": lambda c: None,
            "reset-step": self._reset_step,
            "text-start": lambda c: self._open(self._text, "text", c),
            "text-delta": lambda c: self._append(self._text, c),
            "text-end": lambda c: self._close(self._text, c),
            "reasoning-start": lambda c: self._open(self._reasoning, "reasoning", c),
            "reasoning-delta": lambda c: self._append(self._reasoning, c),
            "reasoning-end": lambda c: self._close(self._reasoning, c),
            "tool-input-start": lambda c: self._update_tool(c, "input-streaming"),
            "tool-input-available": lambda c: self._update_tool(c, "input-available"),
            "tool-output-available": lambda c: self._tool(c["toolCallId"]).update(
                state="output-available", output=c["output"]
            ),
            "tool-output-error": lambda c: self._tool(c["toolCallId"]).update(
                state="output-error", errorText=c["errorText"]
            ),
            "tool-output-denied": lambda c: self._tool(c["toolCallId"]).update(state="output-denied"),
            "tool-approval-request": lambda c: self._tool(c["toolCallId"]).update(
                state="approval-requested", approval={"id": c["approvalId"]}
            ),
            "tool-approval-response": self._approval_response,
            "abort": lambda c: self._end("cancelled"),
            "error": lambda c: self._end("failed"),
        }

    @property
    def _parts(self) -> list[Json]:
        parts: list[Json] = self._message["parts"]
        return parts

    def send(self) -> None:
        last = self.messages[-1]
        if last["role"] == "assistant":  # sent again (an approval): the response goes on with the message
            self._begin(json.loads(json.dumps(last)), replay=False)
        else:
            self._begin(self._new_message(), replay=False)

    def resume(self) -> None:
        """`resumeStream()`: the transport's replay rebuilds the message from its first `start`."""
        last = self.messages[-1]
        keeps = last["role"] == "assistant" and any(
            part.get("state") in ("input-streaming", "approval-responded") for part in last["parts"]
        )
        self._begin(json.loads(json.dumps(last)) if keeps else self._new_message(), replay=True)

    def answer_approval(self, approved: bool = True) -> None:
        """`addToolApprovalResponse` on each approval the message asks for (the SDK sends the chat once
        each has its response: `lastAssistantMessageIsCompleteWithApprovalResponses`)."""
        asked = [part for part in self.messages[-1]["parts"] if part.get("state") == "approval-requested"]
        if not asked:
            raise ClientError("no approval is requested")
        for part in asked:
            part["state"] = "approval-responded"
            part["approval"] = {**part["approval"], "approved": approved}

    def feed(self, frame: Frame) -> None:
        if frame.data == "[DONE]":
            return
        chunk = json.loads(frame.data)
        kind = chunk["type"]
        if kind.startswith("data-"):
            self._data(chunk)
        elif kind in self._chunks:
            self._chunks[kind](chunk)
        else:
            raise ClientError(f"a chunk the SDK does not know: {kind}")
        self._write()

    def shown(self) -> Shown:
        message: Json = next((m for m in reversed(self.messages) if m["role"] == "assistant"), {"parts": []})
        parts = message["parts"]
        tools = tuple(
            (part["toolCallId"], _TOOL_OUTCOMES.get(part["state"], "pending"))
            for part in parts
            if part["type"].startswith("tool-")
        )
        return Shown(
            text="".join(part["text"] for part in parts if part["type"] == "text"),
            reasoning="".join(part["text"] for part in parts if part["type"] == "reasoning"),
            tools=tools,
            ended=self._finish,
            gap=self._gap,
        )

    # -- what one chunk does

    def _new_message(self) -> Json:
        self._ids += 1
        return {"id": f"generated-{self._ids}", "role": "assistant", "parts": []}

    def _begin(self, message: Json, replay: bool) -> None:
        self._message, self._replay, self._first_start = message, replay, True
        self._text, self._reasoning = {}, {}

    def _write(self) -> None:
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index]["id"] == self._message["id"]:
                self.messages[index] = json.loads(json.dumps(self._message))
                return
        self.messages.append(json.loads(json.dumps(self._message)))

    def _start(self, chunk: Json) -> None:
        if self._replay and self._first_start:  # resetStateOnFirstMessageStart
            self._message = {"id": chunk.get("messageId", self._message["id"]), "role": "assistant", "parts": []}
            self._text, self._reasoning = {}, {}
            self._finish = None
        self._first_start = False
        if chunk.get("messageId") is not None:
            self._message["id"] = chunk["messageId"]

    def _finish_chunk(self, chunk: Json) -> None:
        reason = chunk.get("finishReason")
        self._end("waiting" if reason == "tool-calls" else "completed")

    def _end(self, how: str) -> None:
        self._finish = how

    def _step_start(self) -> int:
        starts = [i for i, part in enumerate(self._parts) if part["type"] == "step-start"]
        return starts[-1] + 1 if starts else 0

    def _reset_step(self, chunk: Json) -> None:
        del self._parts[self._step_start() :]
        self._text, self._reasoning = {}, {}

    def _open(self, active: dict[str, Json], kind: str, chunk: Json) -> None:
        part = {"type": kind, "text": "", "state": "streaming"}
        active[chunk["id"]] = part
        self._parts.append(part)

    def _append(self, active: dict[str, Json], chunk: Json) -> None:
        if chunk["id"] not in active:
            raise ClientError(f"{chunk['type']} for missing part {chunk['id']!r}")
        active[chunk["id"]]["text"] += chunk["delta"]

    def _close(self, active: dict[str, Json], chunk: Json) -> None:
        if chunk["id"] not in active:
            raise ClientError(f"{chunk['type']} for missing part {chunk['id']!r}")
        active.pop(chunk["id"])["state"] = "done"

    def _update_tool(self, chunk: Json, state: str) -> None:
        """updateToolPart: the part of this call in the current step, or a new one."""
        step = self._parts[self._step_start() :]
        part = next((p for p in step if p["type"].startswith("tool-") and p["toolCallId"] == chunk["toolCallId"]), None)
        if part is None:
            part = {"type": f"tool-{chunk['toolName']}", "toolCallId": chunk["toolCallId"]}
            self._parts.append(part)
        part.update(state=state, input=chunk.get("input"))

    def _tool(self, call_id: str) -> Json:
        """getToolInvocation: the current step's part of the call, else the last one of the message."""
        step = self._parts[self._step_start() :]
        for parts in (step, list(reversed(self._parts))):
            for part in parts:
                if part["type"].startswith("tool-") and part["toolCallId"] == call_id:
                    return part
        raise ClientError(f"no tool invocation for {call_id!r}")

    def _approval_response(self, chunk: Json) -> None:
        for part in self._parts:
            if part["type"].startswith("tool-") and part.get("approval", {}).get("id") == chunk["approvalId"]:
                part["state"] = "approval-responded"
                part["approval"] = {**part["approval"], "approved": chunk["approved"]}
                return
        raise ClientError(f"no tool invocation for approval {chunk['approvalId']!r}")

    def _data(self, chunk: Json) -> None:
        if chunk.get("transient"):
            self._gap = self._gap or chunk["type"] == "data-gap"
            return
        same = next(
            (p for p in self._parts if p["type"] == chunk["type"] and "id" in chunk and p.get("id") == chunk["id"]),
            None,
        )
        if same is not None:
            same["data"] = chunk["data"]
        else:
            self._parts.append(dict(chunk))


# -- AG-UI's agent ------------------------------------------------------------------------------------


class AgUiAgent:
    """`@ag-ui/client`'s messages. Call `run()` (runAgent: a new message, or `resume` with an answer),
    or `connect()` (connectAgent), then `feed()` the stream's frames; a `TokentailAgent` reconnect
    goes on feeding the same stream, after `last_event_id`."""

    def __init__(self) -> None:
        self.messages: list[Json] = [{"id": "user-1", "role": "user", "content": "hi"}]
        self.last_event_id: str | None = None
        self._outcome: str | None = None
        self._gap = False
        self._stream_started = False
        self._finished = False
        self._interrupted = False  # pendingInterrupts: a RUN_FINISHED with an interrupt came
        self._text: set[str] = set()  # the stream's open text messages (verifyEvents)
        self._calls: set[str] = set()
        self._events: dict[str, Callable[[Json], None]] = {
            "RUN_STARTED": self._run_started,
            "RUN_FINISHED": self._run_finished,
            "RUN_ERROR": lambda e: self._end("failed"),
            "TEXT_MESSAGE_START": lambda e: self._start_message(e, "assistant", self._text),
            "TEXT_MESSAGE_CONTENT": lambda e: self._content(e, self._text),
            "TEXT_MESSAGE_END": lambda e: self._end_message(e, self._text),
            "REASONING_START": lambda e: None,
            "REASONING_END": lambda e: None,
            "REASONING_MESSAGE_START": lambda e: self._start_message(e, "reasoning", None),
            "REASONING_MESSAGE_CONTENT": lambda e: self._content(e, None),
            "REASONING_MESSAGE_END": lambda e: None,
            "TOOL_CALL_START": self._tool_start,
            "TOOL_CALL_ARGS": self._tool_args,
            "TOOL_CALL_END": lambda e: self._calls.discard(e["toolCallId"]),
            "TOOL_CALL_RESULT": self._tool_result,
            "MESSAGES_SNAPSHOT": self._snapshot,
            "ACTIVITY_SNAPSHOT": self._activity,
            "CUSTOM": lambda e: setattr(self, "_gap", self._gap or e["name"] == "gap"),
        }

    def run(self, answering: bool = False) -> None:
        """A new stream (runAgent, `answering` the interrupt with `resume`, or connectAgent): verifyEvents
        starts over. An agent holding an interrupt refuses any other (its onInitialize)."""
        if self._interrupted and not answering:
            raise ClientError("Thread has 1 pending interrupt(s) not addressed by resume")
        self._interrupted = False
        self._stream_started = self._finished = False
        self._text, self._calls = set(), set()

    def connect(self) -> None:
        self.run()

    def reload(self) -> None:
        """A new agent, on a page reloaded (or another device's): it knows nothing yet."""
        self.__init__()  # type: ignore[misc]
        self.messages = []

    def feed(self, frame: Frame) -> None:
        event = json.loads(frame.data)
        kind = event["type"]
        if not self._stream_started and kind not in ("RUN_STARTED", "RUN_ERROR"):
            raise ClientError(f"First event must be 'RUN_STARTED', got {kind}")
        if self._finished and kind not in ("RUN_STARTED", "RUN_ERROR"):
            raise ClientError(f"Cannot send event type '{kind}': the run has already finished")
        self._events[kind](event)
        self._stream_started = True
        if frame.id is not None:
            self.last_event_id = frame.id

    def shown(self) -> Shown:
        results: dict[str, list[str]] = {}
        for message in self.messages:
            if message["role"] == "tool":
                results.setdefault(message["toolCallId"], []).append(_outcome_of_result(message["content"]))
        tools = []
        for message in self.messages:
            for call in message.get("toolCalls", []):
                outcomes = results.get(call["id"], ["pending"])
                tools.append((call["id"], outcomes[0] if len(outcomes) == 1 else "+".join(outcomes)))
        return Shown(
            text="".join(m["content"] for m in self.messages if m["role"] == "assistant" and m.get("content")),
            reasoning="".join(m["content"] for m in self.messages if m["role"] == "reasoning"),
            tools=tuple(tools),
            ended=self._outcome,
            gap=self._gap,
        )

    # -- what one event does

    def _find(self, message_id: str) -> Json | None:
        return next((m for m in self.messages if m["id"] == message_id), None)

    def _run_started(self, event: Json) -> None:
        if self._stream_started and not self._finished:
            raise ClientError("Cannot send 'RUN_STARTED' while a run is still active")
        self._finished = False
        self._outcome = None

    def _run_finished(self, event: Json) -> None:
        if self._text or self._calls:
            raise ClientError(f"RUN_FINISHED while messages or calls are open: {self._text | self._calls}")
        self._finished = True
        kind = event["outcome"]["type"]
        self._interrupted = kind == "interrupt"
        self._outcome = {"success": "completed", "interrupt": "waiting"}.get(kind, kind)

    def _end(self, how: str) -> None:
        self._finished = True
        self._outcome = how

    def _start_message(self, event: Json, role: str, open_set: set[str] | None) -> None:
        message_id = event["messageId"]
        if open_set is not None:
            if message_id in open_set:
                raise ClientError(f"a text message with ID {message_id!r} is already in progress")
            open_set.add(message_id)
        if self._find(message_id) is None:
            self.messages.append({"id": message_id, "role": role, "content": ""})

    def _content(self, event: Json, open_set: set[str] | None) -> None:
        if open_set is not None and event["messageId"] not in open_set:
            raise ClientError(f"no active text message {event['messageId']!r}")
        message = self._find(event["messageId"])
        if message is not None:
            message["content"] = (message.get("content") or "") + event["delta"]

    def _end_message(self, event: Json, open_set: set[str]) -> None:
        if event["messageId"] not in open_set:
            raise ClientError(f"no active text message {event['messageId']!r}")
        open_set.discard(event["messageId"])

    def _tool_start(self, event: Json) -> None:
        call_id = event["toolCallId"]
        if call_id in self._calls:
            raise ClientError(f"a tool call with ID {call_id!r} is already in progress")
        self._calls.add(call_id)
        if any(call["id"] == call_id for m in self.messages for call in m.get("toolCalls", [])):
            return  # already there: only its name is updated
        parent_id = event.get("parentMessageId")
        parent = self._find(parent_id) if parent_id else None
        if parent is None or parent["role"] != "assistant":
            parent = {"id": parent_id if parent_id and parent is None else call_id, "role": "assistant"}
            self.messages.append(parent)
        parent.setdefault("toolCalls", []).append(
            {"id": call_id, "type": "function", "function": {"name": event["toolCallName"], "arguments": ""}}
        )

    def _tool_args(self, event: Json) -> None:
        for message in self.messages:
            for call in message.get("toolCalls", []):
                if call["id"] == event["toolCallId"]:
                    call["function"]["arguments"] += event["delta"]
                    return

    def _tool_result(self, event: Json) -> None:
        result = {
            "id": event["messageId"],
            "toolCallId": event["toolCallId"],
            "role": "tool",
            "content": event["content"],
        }
        owner = next(
            (
                i
                for i, m in enumerate(self.messages)
                if m["role"] == "assistant" and any(c["id"] == event["toolCallId"] for c in m.get("toolCalls", []))
            ),
            None,
        )
        if owner is None:
            self.messages.append(result)
            return
        at = owner + 1
        while at < len(self.messages) and self.messages[at]["role"] == "tool":
            at += 1
        self.messages.insert(at, result)

    def _activity(self, event: Json) -> None:
        """ACTIVITY_SNAPSHOT: an activity message, made or (`replace`, by default) its content replaced."""
        message = self._find(event["messageId"])
        if message is None:
            self.messages.append(
                {"id": event["messageId"], "role": "activity", "activityType": event["activityType"], "content": {}}
            )
            message = self.messages[-1]
        if event.get("replace", True) or not message["content"]:
            message["content"] = event["content"]

    def _snapshot(self, event: Json) -> None:
        """MESSAGES_SNAPSHOT: the messages it names replace theirs, others go (reasoning stays when it has
        none), and its new ones come after."""
        given = {m["id"]: m for m in event["messages"]}
        has_reasoning = any(m["role"] == "reasoning" for m in event["messages"])
        kept = [
            given.get(m["id"], m)
            for m in self.messages
            if m["id"] in given or (m["role"] == "reasoning" and not has_reasoning)
        ]
        ids = {m["id"] for m in kept}
        self.messages = [*kept, *(m for m in event["messages"] if m["id"] not in ids)]


# -- the Responses API --------------------------------------------------------------------------------


@dataclass
class _Response:
    snapshot: Json | None = None
    final: Json | None = None
    last_sequence: int = -1


class ResponsesClient:
    """`openai`'s accumulated Response of each response of a chain (a run's segments). Call
    `create()` for each new response (a request, or the answer to a question), then `feed()`; a resume
    (`retrieve(stream=True, starting_after=last_sequence)`) goes on feeding the same response."""

    def __init__(self) -> None:
        self.responses: list[_Response] = []
        self._gap = False

    def create(self) -> None:
        self.responses.append(_Response())

    @property
    def last_sequence(self) -> int:
        return self.responses[-1].last_sequence

    def feed(self, frame: Frame) -> None:
        event = json.loads(frame.data)
        current = self.responses[-1]
        if event["sequence_number"] <= current.last_sequence:
            raise ClientError(f"sequence number {event['sequence_number']} again (after {current.last_sequence})")
        current.last_sequence = event["sequence_number"]
        kind = event["type"]
        if kind == "error":
            self._gap = self._gap or event.get("code") == "gap"
            return
        if kind in ("response.created", "response.queued", "response.in_progress"):
            kept = current.snapshot["output"] if current.snapshot is not None else []
            if current.snapshot is not None and current.snapshot["id"] != event["response"]["id"]:
                raise ClientError("Lifecycle response identity changed.")
            current.snapshot = {**event["response"], "output": kept or event["response"]["output"]}
            return
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            current.final = event["response"]
            return
        if current.snapshot is None:
            raise ClientError(f"{kind} before the response was created")
        _accumulate(current.snapshot["output"], event)

    def shown(self) -> Shown:
        text, reasoning, tools, ended = [], [], [], None
        shown = [source for response in self.responses if (source := response.final or response.snapshot)]
        # A call and its output may be in two responses of the chain: a call approved, then run.
        outputs = {
            item["call_id"]: item["output"]
            for source in shown
            for item in source["output"]
            if item["type"] == "function_call_output"
        }
        for response in self.responses:
            source = response.final or response.snapshot
            if source is None:
                continue
            for item in source["output"]:
                if item["type"] == "message":
                    text += [part["text"] for part in item["content"]]
                elif item["type"] == "reasoning":
                    reasoning += [part["text"] for part in item["summary"]]
                elif item["type"] == "function_call" and item["name"] != "tokentail_input":
                    output = outputs.get(item["call_id"])
                    tools.append((item["call_id"], "pending" if output is None else _outcome_of_result(output)))
            if response.final is not None:
                last = response.final["output"][-1] if response.final["output"] else {}
                asks = last.get("type") == "mcp_approval_request" or last.get("name") == "tokentail_input"
                ended = "waiting" if asks else response.final["status"]
            else:
                ended = None
        return Shown("".join(text), "".join(reasoning), tuple(tools), ended, self._gap)


def _append_text(item: Json, event: Json) -> None:
    item["content"][event["content_index"]]["text"] += event["delta"]


def _set_content(item: Json, event: Json) -> None:
    if "part" in event:
        item["content"][event["content_index"]] = dict(event["part"])
    else:
        item["content"][event["content_index"]]["text"] = event["text"]


def _add_content(item: Json, event: Json) -> None:
    if event["content_index"] != len(item["content"]):
        raise ClientError("content_part.added out of order")
    item["content"].append(dict(event["part"]))


def _append_summary(item: Json, event: Json) -> None:
    item["summary"][event["summary_index"]]["text"] += event["delta"]


def _set_summary(item: Json, event: Json) -> None:
    item["summary"][event["summary_index"]]["text"] = event.get("text", event.get("part", {}).get("text"))


def _append_arguments(item: Json, event: Json) -> None:
    item["arguments"] += event["delta"]


def _set_arguments(item: Json, event: Json) -> None:
    item["arguments"] = event["arguments"]


_ITEM_EVENTS: dict[str, Callable[[Json, Json], None]] = {
    "response.content_part.added": _add_content,
    "response.output_text.delta": _append_text,
    "response.output_text.done": _set_content,
    "response.content_part.done": _set_content,
    "response.reasoning_summary_part.added": lambda item, event: item["summary"].append(dict(event["part"])),
    "response.reasoning_summary_text.delta": _append_summary,
    "response.reasoning_summary_text.done": _set_summary,
    "response.reasoning_summary_part.done": _set_summary,
    "response.function_call_arguments.delta": _append_arguments,
    "response.function_call_arguments.done": _set_arguments,
}


def _accumulate(output: list[Json], event: Json) -> None:
    """The accumulator's checks and updates for one item event."""
    kind, index = event["type"], event.get("output_index")
    if kind == "response.output_item.added":
        if index != len(output):
            raise ClientError(f"output_item.added at {index}, expected {len(output)}")
        if any(item.get("id") == event["item"].get("id") for item in output):
            raise ClientError(f"an output item {event['item'].get('id')!r} again")
        output.append(json.loads(json.dumps(event["item"])))
        return
    if index is None or index >= len(output):
        raise ClientError(f"{kind}: no output item {index}")
    if kind == "response.output_item.done":
        output[index] = json.loads(json.dumps(event["item"]))
    elif kind in _ITEM_EVENTS:
        _ITEM_EVENTS[kind](output[index], event)


# -- tokentail's own stream ---------------------------------------------------------------------------

_TERMINAL = {"run.completed": "completed", "run.cancelled": "cancelled", "run.failed": "failed"}


@dataclass
class NativeClient:
    """The session's events as docs/api.md says to keep them; `last_event_id` for a reconnect."""

    events: list[tuple[int, str, Json]] = field(default_factory=list)
    last_event_id: int = 0
    gap: bool = False
    ended: str | None = None

    def feed(self, frame: Frame) -> None:
        if frame.event == "gap":
            self.gap = True
            return
        assert frame.id is not None and frame.event is not None
        seq = int(frame.id)
        if seq <= self.last_event_id:
            raise ClientError(f"event {seq} again (after {self.last_event_id})")
        self.last_event_id = seq
        if frame.event == "snapshot":
            for event in json.loads(frame.data)["events"]:
                self._apply(event["id"], event["event"], event["data"])
        else:
            self._apply(seq, frame.event, json.loads(frame.data))

    def _apply(self, seq: int, kind: str, data: Json) -> None:
        run = data.get("run_id")
        if kind == "run.retrying":
            self.events = [e for e in self.events if e[2].get("run_id") != run]
        elif kind == "run.continued":
            self.events = [e for e in self.events if e[2].get("run_id") != run or e[0] <= data["from_event_id"]]
        elif kind == "input.required":
            self.ended = "waiting"
        elif kind == "input.received":
            self.ended = "waiting" if data.get("waiting_for") else None
        self.ended = _TERMINAL.get(kind, self.ended)
        self.events.append((seq, kind, data))

    def shown(self) -> Shown:
        tools: dict[str, str] = {}
        for _, kind, data in self.events:
            if kind == "tool.started":
                tools.setdefault(data["call_id"], "pending")
            elif kind in ("tool.completed", "tool.failed"):
                tools[data["call_id"]] = (
                    "completed" if kind == "tool.completed" else "denied" if data.get("denied") else "failed"
                )
        return Shown(
            text="".join(d["text"] for _, kind, d in self.events if kind == "message.delta"),
            reasoning="".join(d["text"] for _, kind, d in self.events if kind == "reasoning.delta"),
            tools=tuple(tools.items()),
            ended=self.ended,
            gap=self.gap,
        )


# -- LangGraph's useStream (v1 routes) ------------------------------------------------------------------

_LG_STATUS = {"success": "completed", "interrupted": "cancelled", "error": "failed", "timeout": "failed"}


class LangGraphClient:
    """What `useStream` (`@langchain/langgraph-sdk` 1.15, dist/ui/manager.js `StreamManager.enqueue`,
    dist/ui/messages.js `MessageTupleManager`) shows of a thread's runs: the stream's `values` (each
    root `values` event replaces them; the first of a stream clears an earlier `__interrupt__`, one
    with `__interrupt__` adds its interrupts, by id, and keeps the messages), each `messages` tuple's
    chunk concatenated with the earlier chunks of its message id (`AIMessageChunk.concat`: text
    appended, tool call chunks merged by index and id, args appended) and put in `values.messages` in
    its message's place (or last). An `error` event ends the stream (the SDK stops reading it).

    Call `submit()` for each `runs.stream` request (a run, or `command: {resume}`), `join()` for
    `joinStream(runId)` (Last-Event-ID `-1`: a replay, whose chunks start their message over), then
    `feed()` the frames; a reconnect (the SDK's own, through `Location`, with `last_event_id`) goes
    on feeding the same stream. `closed(status)`: the stream ended without `error`, and the run's
    status (`GET .../runs/{rid}`, which the SDK asks when no `end` came) was `status`."""

    def __init__(self) -> None:
        self.values: Json | None = None
        self.last_event_id: str | None = None
        self._chunks: dict[str, Json] = {}
        self._replaying: set[str] = set()
        self._cleared = False  # clearedPreviousInterrupts: this stream's first root `values` came
        self._error = False
        self._stopped = False  # this stream's `error` came: the SDK reads no more of it
        self._status: str | None = None
        self._gap = False
        self._glitches: list[str] = []
        self._history: list[tuple[Any, ...]] = []
        self._progress: dict[str, str] = {}

    def submit(self) -> None:
        self._cleared = self._stopped = self._error = False
        self.last_event_id, self._status = None, None

    def join(self) -> None:
        self.submit()
        self._replaying = set(self._chunks)  # startReplay

    def closed(self, status: str) -> None:
        self._status = status

    def feed(self, frame: Frame) -> None:
        if frame.id is not None:
            self.last_event_id = frame.id
        if self._stopped:
            return
        data = json.loads(frame.data)
        event = frame.event or ""
        if event == "error":
            if not isinstance(data, dict) or not {"error", "message"} <= set(data):
                raise ClientError(f"an error event without its error and message: {data}")
            self._error = self._stopped = True
        elif event == "values":
            self._values(data)
        elif event == "messages":
            self._message(data)
        elif event == "custom":
            self._gap = self._gap or data.get("name") == "gap"
        elif event == "tools":
            self._tool_progress(data)
        elif event not in ("metadata", "updates") and "|" not in event:
            raise ClientError(f"an event useStream does not read: {event}")
        shown = self._display()
        if not self._history or self._history[-1] != shown:
            self._history.append(shown)

    def shown(self) -> Shown:
        messages = (self.values or {}).get("messages", [])
        results: dict[str, list[str]] = {}
        for message in messages:
            if message["type"] == "tool":
                outcome = "failed" if message.get("status") == "error" else "completed"
                results.setdefault(message["tool_call_id"], []).append(outcome)
        tools = []
        for message in messages:
            if message["type"] != "ai":
                continue
            for call in message.get("tool_calls", []):
                outcomes = results.get(call["id"], ["pending"])
                tools.append((call["id"], "+".join(outcomes)))
            tools += [(call["id"], "invalid") for call in message.get("invalid_tool_calls", [])]
        return Shown(
            text=self._text(),
            tools=tuple(tools),
            ended=self._ended(),
            gap=self._gap,
            glitches=tuple(self._glitches),
            history=tuple(self._history),
        )

    # -- what one event does

    def _text(self) -> str:
        messages = (self.values or {}).get("messages", [])
        return "".join(m["content"] for m in messages if m["type"] == "ai" and isinstance(m["content"], str))

    def _display(self) -> tuple[Any, ...]:
        """The text, the tools' results and their progress (`toolProgress`) shown now."""
        messages = (self.values or {}).get("messages", [])
        results = tuple((m["tool_call_id"], str(m["content"])) for m in messages if m["type"] == "tool")
        return self._text(), results, tuple(self._progress.items())

    def _tool_progress(self, data: Json) -> None:
        """stream.lgp.js `handleToolEvent`: a call's progress by its id, started again by `on_tool_start`."""
        key, event = str(data.get("toolCallId") or data.get("name")), data["event"]
        states = {"on_tool_start": "starting", "on_tool_event": "running", "on_tool_end": "completed"}
        if event == "on_tool_start" or key in self._progress:
            self._progress[key] = states.get(event, "error")

    def _ended(self) -> str | None:
        if self._error:
            return "failed"
        if (self.values or {}).get("__interrupt__"):
            return "waiting"
        return _LG_STATUS.get(self._status or "")

    def _values(self, data: Json) -> None:
        if not isinstance(data, dict):
            raise ClientError(f"values that are no state: {data}")
        previous = dict(self.values or {})
        if not self._cleared:
            previous.pop("__interrupt__", None)
            self._cleared = True
        if "__interrupt__" in data:
            interrupts = list(data["__interrupt__"])
            if interrupts and isinstance(previous.get("__interrupt__"), list):
                known = {i.get("id") for i in previous["__interrupt__"]}
                interrupts = previous["__interrupt__"] + [i for i in interrupts if i.get("id") not in known]
            self.values = {**previous, "__interrupt__": interrupts}
        elif isinstance(previous.get("__interrupt__"), list):
            self.values = {**data, "__interrupt__": previous["__interrupt__"]}
        else:
            self.values = dict(data)

    def _message(self, data: Any) -> None:
        serialized, _metadata = data
        message_id = serialized.get("id")
        if not message_id:
            return  # "No message ID found for chunk, ignoring in state"
        kind = serialized["type"]
        if kind.endswith("MessageChunk"):
            kind = kind[: -len("MessageChunk")].lower()
        chunk = {**serialized, "type": kind}
        if message_id in self._replaying:
            self._replaying.discard(message_id)
            self._chunks.pop(message_id, None)
        previous = self._chunks.get(message_id)
        merged = _concat(previous, chunk) if previous is not None else _chunk_of(chunk)
        self._chunks[message_id] = merged
        values = dict(self.values or {})
        messages = list(values.get("messages", []))
        at = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["id"] == message_id), None)
        shown = _message_dict(merged)
        if at is None:
            messages.append(shown)
        else:
            before = messages[at].get("content")
            if isinstance(before, str) and not shown.get("content", "").startswith(before):
                self._glitches.append(f"{message_id} showed {before!r}, then {shown.get('content')!r}")
            messages[at] = shown
        self.values = {**values, "messages": messages}


def _chunk_of(message: Json) -> Json:
    """A message as the manager keeps it: its tool call chunks (an AI message's: its calls, whole)."""
    chunk = dict(message)
    if chunk["type"] == "ai":
        chunks = chunk.get("tool_call_chunks") or [
            {"id": c["id"], "name": c["name"], "args": json.dumps(c["args"]), "index": i, "type": "tool_call_chunk"}
            for i, c in enumerate(chunk.get("tool_calls") or [])
        ]
        chunk["tool_call_chunks"] = [dict(c) for c in chunks]
    return chunk


def _concat(left: Json, right: Json) -> Json:
    """`BaseMessageChunk.concat`: text appended; an AI chunk's tool call chunks merged (`_mergeLists`:
    the same index and, where both have one, the same id: args appended, name and id replaced)."""
    if left["type"] != right["type"]:
        raise ClientError(f"chunks of message {left['id']!r} of two types: {left['type']}, {right['type']}")
    merged = {**left, "content": left.get("content", "") + right.get("content", "")}
    if left["type"] == "ai":
        calls = [dict(c) for c in left["tool_call_chunks"]]
        for item in _chunk_of(right)["tool_call_chunks"]:
            target = next(
                (
                    c
                    for c in calls
                    if c.get("index") == item.get("index")
                    and (not c.get("id") or not item.get("id") or c["id"] == item["id"])
                ),
                None,
            )
            if target is None:
                calls.append(dict(item))
            else:
                target["args"] = (target.get("args") or "") + (item.get("args") or "")
                target.update({key: item[key] for key in ("id", "name") if item.get(key)})
        merged["tool_call_chunks"] = calls
    return merged


def _message_dict(chunk: Json) -> Json:
    """`toMessageDict`: an AI chunk's tool calls parsed from its chunks (those whose args do not parse:
    `invalid_tool_calls`)."""
    message = {key: value for key, value in chunk.items() if key != "tool_call_chunks"}
    if chunk["type"] == "ai":
        valid, invalid = [], []
        for call in chunk["tool_call_chunks"]:
            try:
                valid.append({"id": call["id"], "name": call["name"], "args": json.loads(call["args"] or "{}")})
            except ValueError:
                invalid.append({"id": call["id"], "name": call["name"], "args": call["args"]})
        message.update(tool_calls=valid, invalid_tool_calls=invalid)
    return message


# -- LangGraph's v2 client (the Agent Streaming Protocol) ----------------------------------------------


@dataclass
class _V2Message:
    id: str
    text: str = ""
    reasoning: str = ""


class LangGraphV2Client:
    """What `@langchain/langgraph-sdk` 1.15's `ThreadStream` (dist/client/stream/index.js) shows of a
    thread, on one event stream of the channels messages, tools, lifecycle, input, values and custom:

    - every envelope once: one whose `event_id` it had is dropped (`#seenEventIds`);
    - `thread.messages` (messages.js `MessageAssembler`): a message per `message-start`, the one open in
      its namespace taking the deltas after it (`.text`: its text deltas joined, `.reasoning` likewise)
      until its `message-finish`; a delta with no message open is lost (no message is yielded for it);
    - `thread.toolCalls` (handles/tools.js `ToolCallAssembler`): a call per `tool-started`, settled by
      its `tool-finished` (completed) or `tool-error` (failed; `code: denied`: denied);
    - the root's lifecycle: `interrupted` (waiting), `completed`, `failed` (tokentail's cancel: an
      error `cancelled: ...`), `running` again after answers; `values`: the thread's state.

    It shows the text of the last `values` (the state; streamed text until one came). `last_event_id`:
    the last `event_id` of the durable form `<ms>-<seq>` it had, which PR #2805's client sends back as
    `Last-Event-ID` when it reconnects."""

    def __init__(self) -> None:
        self.values: Json | None = None
        self.last_event_id: str | None = None
        self._seen: set[str] = set()
        self._messages: list[_V2Message] = []
        self._open: dict[tuple[str, ...], _V2Message] = {}
        self._tools: list[list[str]] = []  # [call id, outcome], per tool-started
        self._ended: str | None = None
        self._gap = False
        self._glitches: list[str] = []
        self._history: list[Any] = []

    def feed(self, frame: Frame) -> None:
        envelope = json.loads(frame.data)
        if envelope.get("type") != "event":
            raise ClientError(f"not an event envelope: {frame.data}")
        if not self._first_time(envelope.get("event_id")):
            return
        params = envelope["params"]
        namespace, data = tuple(params["namespace"]), params["data"]
        if namespace:
            return  # a child run's: the root's stream shows none here
        method = envelope["method"]
        if method == "messages":
            self._message(data)
        elif method == "tools":
            self._tool(data)
        elif method == "lifecycle":
            self._lifecycle(data)
        elif method == "values":
            self.values = data
        elif method == "custom":
            self._gap = self._gap or data.get("name") == "gap"
        elif method not in ("input.requested", "input.answered"):
            raise ClientError(f"an event of no channel asked for: {method}")
        shown = (self._streamed(), tuple((call, outcome) for call, outcome in self._tools))
        if not self._history or self._history[-1] != shown:
            self._history.append(shown)

    def shown(self) -> Shown:
        text = self._streamed()
        if self.values is not None:
            messages = self.values.get("messages", [])
            text = "".join(m["content"] for m in messages if m["type"] == "ai" and isinstance(m["content"], str))
        return Shown(
            text=text,
            reasoning="".join(message.reasoning for message in self._messages),
            tools=tuple((call, outcome) for call, outcome in self._tools),
            ended=self._ended,
            gap=self._gap,
            glitches=tuple(self._glitches),
            history=tuple(self._history),
        )

    def _first_time(self, event_id: str | None) -> bool:
        """Whether it takes the envelope in (`#seenEventIds`); one without an id always."""
        if event_id is None:
            return True
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        if re.fullmatch(r"\d+-\d+", event_id):
            self.last_event_id = event_id
        return True

    def _streamed(self) -> str:
        return "".join(message.text for message in self._messages)

    def _message(self, data: Json) -> None:
        kind, root = data["event"], ()
        if kind == "message-start":
            self._open[root] = _V2Message(data["id"])
            self._messages.append(self._open[root])
            return
        message = self._open.get(root)
        if message is None:
            self._glitches.append(f"{kind} with no message open: lost")
            return
        if kind == "content-block-start":
            message.text += data["content"].get("text", "")
            message.reasoning += data["content"].get("reasoning", "")
        elif kind == "content-block-delta":
            delta = data["delta"]
            message.text += delta.get("text", "") if delta["type"] == "text-delta" else ""
            message.reasoning += delta.get("reasoning", "") if delta["type"] == "reasoning-delta" else ""
        elif kind in ("message-finish", "error"):
            del self._open[root]

    def _tool(self, data: Json) -> None:
        call_id = data["tool_call_id"]
        if data["event"] == "tool-started":
            self._tools.append([call_id, "pending"])
            return
        started = next((tool for tool in reversed(self._tools) if tool[0] == call_id), None)
        if started is None:
            return  # the assembler has no call of that id: nothing is shown
        if data["event"] == "tool-finished":
            started[1] = "completed"
        elif data["event"] == "tool-error":
            started[1] = "denied" if data.get("code") == "denied" else "failed"

    def _lifecycle(self, data: Json) -> None:
        event = data["event"]
        if event == "failed":
            self._ended = "cancelled" if str(data.get("error", "")).startswith("cancelled:") else "failed"
        else:
            self._ended = {"interrupted": "waiting", "completed": "completed"}.get(event)
