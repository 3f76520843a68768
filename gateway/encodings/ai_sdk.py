"""The Vercel AI SDK's UI message stream (v1), what `useChat` reads, from a run's stored events.

    data: {"type":"start","messageId":"r_…"}        run.queued (the run's id is the message's)
    data: {"type":"start-step"}                      run.started (each attempt is one step)
    data: {"type":"text-start","id":"text-7"} …      message.delta: text-start once, then text-delta;
                                                     text-end before a tool, reasoning or the end
    data: {"type":"reasoning-start", …}              reasoning.delta, the same way
    data: {"type":"tool-input-start", …}             tool.started: its whole input at once
    data: {"type":"tool-input-available", …}
    data: {"type":"tool-output-available", …}        tool.completed (tool.failed: tool-output-error, or
                                                     tool-output-denied when a person denied the call)
    data: {"type":"data-status","id":"status", …}    status: one part, updated in place
    data: {"type":"data-<name>","data":…}            data.<name>
    data: {"type":"reset-step"}                      run.retrying: the client drops the dead attempt
    data: {"type":"reset-step"}, then the parts kept run.continued that drops the text of a model turn a
                                                     crash cut (one that drops nothing: nothing)
    data: {"type":"finish-step"} / {"type":"finish","messageMetadata":{"run_id","usage"}}
    data: {"type":"abort","reason":…}                run.cancelled (run.failed: error)
    data: {"type":"tool-approval-request", …}        input.required approving a tool call (`call_id`):
                                                     `approvalId` is the question's input id; the
                                                     response ends here while the run waits
    data: {"type":"tool-approval-response", …}       input.received of one
    data: {"type":"data-input","id":<input id>, …}   a question of another kind, and its answer (in place)
    data: [DONE]

A question not yet answered ends the response (`finish`, as the SDK's own servers do after an
approval request): the SDK's `addToolApprovalResponse` then sends the chat again, with the answer in
the tool part, which tokentail takes as the answer (gateway/routes/ai_sdk.py); a question of another
kind is answered through the REST API, then `resumeStream()`. A response that continues the message
after an answer (`continuing`) opens with `start` and goes on from there.

The SDK's `reset-step` drops the parts of the current step, which is the run's attempt: to drop only
the events after a `run.continued`'s `from_event_id`, the parts before it are sent again after it.

Ids are made from event ids (`text-<seq>`), so a replay gives the client the same parts again. A
`gap` (the stream was trimmed past the run's start) becomes a transient `data-gap` part: the SDK has
no word for it, and saying nothing would be a silent skip.
"""

from typing import Any

from tokentail.gateway.encodings.translation import Translation, compact
from tokentail.shared.events import Gap

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
Part = dict[str, Any]
_DELTAS = ("text-delta", "reasoning-delta")


def _last_seq(seq: int, part: Part) -> int:
    """The id of the last event a kept part holds (a block's deltas, kept as one, hold several)."""
    return int(part["delta"][-1][0]) if part["type"] in _DELTAS else seq


class UiMessageStream(Translation[Part]):
    def __init__(self, run_id: str, answered: frozenset[str] = frozenset(), continuing: bool = False) -> None:
        """`answered`: the input ids of the run's questions answered when the response opens (a
        replay goes past them); `continuing`: the response goes on with the message after an answer."""
        super().__init__(run_id)
        self._open: tuple[str, str] | None = None  # the open block: ("text" | "reasoning", its id)
        self._answered = answered
        self._continuing = continuing
        # The parts of the current step (the run's attempt), with the id of the event each came
        # from: what a `run.continued` that drops its last events sends again after `reset-step`.
        # A block's deltas are kept as one part whose `delta` is a list of (id, text): about the
        # size of the answer so far, per response, while its run streams.
        self._step: list[tuple[int, Part]] = []
        self._resent: list[Part] | None = None  # what a run.continued sent again: not the step's twice

    def made(self, parts: list[Part], seq: int) -> None:
        if parts is self._resent:
            return
        for part in parts:
            if part["type"] == "start-step":
                continue  # the step's own start, which reset-step keeps
            if part["type"] in _DELTAS:
                last = self._step[-1][1] if self._step else None
                if last is not None and last["type"] == part["type"] and last["id"] == part["id"]:
                    last["delta"].append((seq, part["delta"]))
                    continue
                part = {**part, "delta": [(seq, part["delta"])]}
            self._step.append((seq, part))

    def opening(self, gap: Gap | None) -> list[Part]:
        """What the response starts with, before the first event."""
        start = [{"type": "start", "messageId": self.run_id}] if self._continuing else []
        return start + (self.on_gap(gap) if gap is not None else [])

    def head(self, gap: Gap | None) -> bytes:
        return self.frames(self.opening(gap), None)

    def frames(self, parts: list[Part], seq: int | None) -> bytes:
        return "".join(f"data: {compact(part)}\n\n" for part in parts).encode()

    def tail(self) -> bytes:
        # Only after the run's end: a stream cut short (a gateway stopping) must not look complete.
        return b"data: [DONE]\n\n" if self.finished else b""

    def on_gap(self, gap: Gap) -> list[Part]:
        return [{"type": "data-gap", "data": gap.model_dump(), "transient": True}]

    def on_data(self, name: str, data: dict[str, Any], seq: int) -> list[Part]:
        return [{"type": f"data-{name}", "data": data["data"]}]

    def on_queued(self, data: dict[str, Any], seq: int) -> list[Part]:
        return [{"type": "start", "messageId": data["run_id"]}]

    def on_started(self, data: dict[str, Any], seq: int) -> list[Part]:
        self._step = []
        return [{"type": "start-step"}]

    def on_text(self, data: dict[str, Any], seq: int) -> list[Part]:
        return self._block("text", data["text"], seq)

    def on_reasoning(self, data: dict[str, Any], seq: int) -> list[Part]:
        return self._block("reasoning", data["text"], seq)

    def on_status(self, data: dict[str, Any], seq: int) -> list[Part]:
        return [{"type": "data-status", "id": "status", "data": {"text": data["text"]}}]

    def on_tool_started(self, data: dict[str, Any], seq: int) -> list[Part]:
        call = {"toolCallId": data["call_id"], "toolName": data["name"]}
        return [
            *self._close(),
            {"type": "tool-input-start", **call},
            {"type": "tool-input-available", **call, "input": data["arguments"]},
        ]

    def on_tool_completed(self, data: dict[str, Any], seq: int) -> list[Part]:
        return [{"type": "tool-output-available", "toolCallId": data["call_id"], "output": data["result"]}]

    def on_tool_failed(self, data: dict[str, Any], seq: int) -> list[Part]:
        if data.get("denied"):  # an approval answered no: the SDK's own state for a call not run
            return [{"type": "tool-output-denied", "toolCallId": data["call_id"]}]
        return [{"type": "tool-output-error", "toolCallId": data["call_id"], "errorText": data["error"]}]

    def on_retrying(self, data: dict[str, Any], seq: int) -> list[Part]:
        self._open = None  # reset-step drops the attempt's parts, open ones too
        self._step = []
        return [{"type": "reset-step"}]

    def on_continued(self, data: dict[str, Any], seq: int) -> list[Part]:
        keep_until = data["from_event_id"]
        if all(_last_seq(shown, part) <= keep_until for shown, part in self._step):
            return []  # nothing dropped: the run goes on in the open block
        step: list[tuple[int, Part]] = []
        for shown, part in self._step:
            if part["type"] in _DELTAS:
                part["delta"] = [piece for piece in part["delta"] if piece[0] <= keep_until]
            if shown <= keep_until:
                step.append((shown, part))
        self._step = step
        self._open = None
        kept = [
            {**part, "delta": "".join(text for _, text in part["delta"])} if part["type"] in _DELTAS else part
            for _, part in self._step
        ]
        # A block whose end was dropped is ended again (its start and text are kept).
        started = {part["id"] for part in kept if part["type"] in ("text-start", "reasoning-start")}
        ended = {part["id"] for part in kept if part["type"] in ("text-end", "reasoning-end")}
        ends = [{"type": f"{block.split('-')[0]}-end", "id": block} for block in sorted(started - ended)]
        self._step += [(seq, part) for part in ends]
        self._resent = [{"type": "reset-step"}, *kept, *ends]
        return self._resent

    def on_completed(self, data: dict[str, Any], seq: int) -> list[Part]:
        metadata = {"run_id": data["run_id"], "usage": data["usage"]}
        return [
            *self._close(),
            {"type": "finish-step"},
            {"type": "finish", "finishReason": "stop", "messageMetadata": metadata},
        ]

    def on_failed(self, data: dict[str, Any], seq: int) -> list[Part]:
        error = data["error"]
        return [*self._close(), {"type": "error", "errorText": f"{error['type']}: {error['message']}"}]

    def on_cancelled(self, data: dict[str, Any], seq: int) -> list[Part]:
        return [*self._close(), {"type": "abort", "reason": data["reason"]}]

    def on_input_required(self, data: dict[str, Any], seq: int) -> list[Part]:
        if data["kind"] == "approval" and data.get("call_id"):
            asked: Part = {
                "type": "tool-approval-request",
                "approvalId": data["input_id"],
                "toolCallId": data["call_id"],
                "reason": data["prompt"],
            }
        else:
            question = {key: data.get(key) for key in ("input_id", "kind", "prompt", "schema", "expires_at")}
            asked = {"type": "data-input", "id": data["input_id"], "data": {**question, "answer": None}}
        if data["input_id"] in self._answered:
            return [*self._close(), asked]
        self.finished = True  # the response ends while the run waits
        return [*self._close(), asked, {"type": "finish-step"}, {"type": "finish", "finishReason": "tool-calls"}]

    def on_input_received(self, data: dict[str, Any], seq: int) -> list[Part]:
        answer = data["answer"]
        if isinstance(answer, dict) and isinstance(answer.get("approved"), bool):
            response = {
                "type": "tool-approval-response",
                "approvalId": data["input_id"],
                "approved": answer["approved"],
            }
            return [{**response, **({"reason": answer["reason"]} if "reason" in answer else {})}]
        return [
            {"type": "data-input", "id": data["input_id"], "data": {"input_id": data["input_id"], "answer": answer}}
        ]

    def _block(self, kind: str, text: str, seq: int) -> list[Part]:
        parts = []
        if self._open is None or self._open[0] != kind:
            parts = self._close()
            self._open = (kind, f"{kind}-{seq}")
            parts.append({"type": f"{kind}-start", "id": self._open[1]})
        if text:
            parts.append({"type": f"{kind}-delta", "id": self._open[1], "delta": text})
        return parts

    def _close(self) -> list[Part]:
        if self._open is None:
            return []
        kind, block_id = self._open
        self._open = None
        return [{"type": f"{kind}-end", "id": block_id}]
