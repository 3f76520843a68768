"""The Vercel AI SDK's UI message stream (v1), what `useChat` reads, from a run's stored events.

    data: {"type":"start","messageId":"r_…"}        run.queued (the run's id is the message's)
    data: {"type":"start-step"}                      run.started (each attempt is one step: a resume
                                                     after an answer goes on in the attempt's step)
    data: {"type":"text-start","id":"text-7"} …      message.delta: text-start once, then text-delta;
                                                     text-end before a tool, reasoning or the end
    data: {"type":"reasoning-start", …}              reasoning.delta, the same way
    data: {"type":"tool-input-start", …}             tool.started: its whole input at once
    data: {"type":"tool-input-available", …}
    data: {"type":"tool-output-available", …}        tool.completed (tool.failed: tool-output-error, or
                                                     tool-output-denied when a person denied the call)
    data: {"type":"data-status","id":"status", …}    status: one part, updated in place
    data: {"type":"data-<name>","data":…}            data.<name>
    data: {"type":"reset-step"}                      run.retrying: the client drops the dead attempt (what
                                                     came before an answered question too: it streams again)
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
    data: {"type":"tool-output-available",           a child run (run.spawned: its parent's tool call) and what
           "preliminary":true,"output":<UIMessage>}  it shows, as the AI SDK's sub-agent pattern: its own
                                                     message, the call's preliminary output, sent as it
                                                     changes (at most once per read, spaced out as it
                                                     grows: subagents.py); its end the
                                                     final output (tool-output-error for one failed or
                                                     cancelled), which its parent's tool.completed of the
                                                     call does not repeat

A question not yet answered ends the response (`finish`, as the SDK's own servers do after an
approval request): the SDK's `addToolApprovalResponse` then sends the chat again, with the answer in
the tool part, which tokentail takes as the answer (gateway/protocols/ai_sdk/routes.py); a question of another
kind is answered through the REST API, then `resumeStream()`. A response that continues the message
after an answer (`continuing`) opens with `start` and goes on from there: it reads the run from its
start, quietly up to the answer, so that a drop after it knows what the message holds.

The SDK's `reset-step` drops the parts of the current step, which is the run's attempt: to drop only
the events after a `run.continued`'s `from_event_id`, the parts the reducer keeps are sent again after it.

Ids are made from event ids (`text-<seq>`), so a replay gives the client the same parts again. A
`gap` (the stream was trimmed past the run's start) becomes a transient `data-gap` part: the SDK has
no word for it, and saying nothing would be a silent skip.
"""

from typing import Any, assert_never

from tokentail.gateway.protocols.ai_sdk.subagents import ChildMessages
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.renderer import FramedRenderer, compact
from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.vocabulary.events import Ending, Gap, InputRequired, RunCancelled, RunCompleted, RunFailed
from tokentail.shared.vocabulary.records import RunRecord

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
Part = dict[str, Any]


def steered_message(run: RunRecord) -> str:
    """The message a chat request that steered `run` opens: what the run says from its steer on
    (`run.queued_seq`, the steer's steer.accepted), as an answer of its own after the user's message."""
    return f"{run.run_id}-steer-{run.queued_seq}"


class UiMessageStream(FramedRenderer[Part], op.OperationCases[list[Part]]):
    def __init__(
        self, run_id: str, answered: frozenset[str] = frozenset(), opens: str | None = None, quiet_until: int = 0
    ) -> None:
        """`answered`: the input ids of the run's questions answered when the response opens (a
        replay goes past them); `opens`: the message a response that starts mid-run opens: the run's
        own, which it goes on with after an answer (read from the run's start, quiet up to
        `quiet_until`), or one of its own for what follows a steer the request sent."""
        super().__init__(Reducer(run_id, quiet_until, answered))
        self._opens = opens
        self._children = ChildMessages(self.reducer)

    def opening(self, gap: Gap | None) -> list[Part]:
        start = [{"type": "start", "messageId": self._opens}] if self._opens is not None else []
        return start + super().opening(gap)

    def rendered(self, batch: Batch) -> list[tuple[list[Part], int | None]]:
        """What each event became; then, after the read's last event, the messages of the child
        runs that changed in it (a preliminary output each: coalesced, not one per token)."""
        out = super().rendered(batch)
        events = batch.events
        if events and not self.reducer.quiet(events[-1].seq) and (due := self._children.due()):
            out.append((due, events[-1].seq))
        return out

    def render(self, operation: op.Operation) -> list[Part]:
        """The operation's parts; a part of the run's own comes after its children's latest messages
        (they are its tool calls' outputs: their order is the stream's)."""
        parts = self._render(operation)
        if parts and not isinstance(operation, op.GapFound) and not self.reducer.quiet(operation.seq):
            if operation.run_id not in self._children:
                return [*self._children.due(), *parts]
        return parts

    def frames(self, parts: list[Part], seq: int | None) -> bytes:
        return "".join(f"data: {compact(part)}\n\n" for part in parts).encode()

    def tail(self) -> bytes:
        # Only after the run's end: a stream cut short (a gateway stopping) must not look complete.
        return b"data: [DONE]\n\n" if self.finished else b""

    def _render(self, operation: op.Operation) -> list[Part]:
        # A child's own operation changes its message (a child's start or end is its parent's, as the
        # call's output); the test of a child first, as a token's is cheapest that way.
        if (
            not isinstance(operation, op.GapFound)
            and operation.run_id in self._children
            and not isinstance(operation, op.ChildStarted | op.ChildEnded)
        ):
            self._children.changed(operation)  # its message goes out once the read is done
            return []
        return self.cases(operation)

    def on_run(self, operation: op.RunOperation) -> list[Part]:
        match operation:
            case op.RunOpened(run_id=run_id):
                return [{"type": "start", "messageId": run_id}]
            case op.AttemptStarted(reason="resume"):
                return []  # the same attempt goes on after an answer: the same step
            case op.AttemptStarted():
                return [{"type": "start-step"}]
            case op.ContentDropped(kept=kept):
                self._children.all_changed()  # the step's outputs go with it: its children's are sent again
                return [{"type": "reset-step"}, *(part for shown in kept for part in self._again(shown))]
            case op.RunEnded(ending=ending):
                return _ended(ending)
            case _:
                assert_never(operation)

    def on_block(self, operation: op.BlockOperation) -> list[Part]:
        match operation:
            case op.BlockAppended(kind=kind, block=block, text=text):
                return [{"type": f"{kind}-delta", "id": f"{kind}-{block}", "delta": text}]
            case op.BlockOpened(kind=kind, block=block):
                return [{"type": f"{kind}-start", "id": f"{kind}-{block}"}]
            case op.BlockClosed(reason="dropped"):
                return []  # the reset-step that follows drops it, open or not
            case op.BlockClosed(kind=kind, block=block):
                return [{"type": f"{kind}-end", "id": f"{kind}-{block}"}]
            case _:
                assert_never(operation)

    def on_tool(self, operation: op.ToolOperation) -> list[Part]:
        match operation:
            case op.ToolCalled(call_id=call_id, name=name, arguments=arguments):
                call = {"toolCallId": call_id, "toolName": name}
                return [
                    {"type": "tool-input-start", **call},
                    {"type": "tool-input-available", **call, "input": arguments},
                ]
            case op.ToolFinished(call_id=call_id) | op.ToolFailedOp(call_id=call_id) if self._children.final(call_id):
                return []  # the call of a child run, which its end gave its final output
            case op.ToolFinished(call_id=call_id, result=result):
                return [{"type": "tool-output-available", "toolCallId": call_id, "output": result}]
            case op.ToolFailedOp(call_id=call_id, error=error):
                return [{"type": "tool-output-error", "toolCallId": call_id, "errorText": error}]
            case op.ToolDenied(call_id=call_id):  # the SDK's own state for a call a person denied
                return [{"type": "tool-output-denied", "toolCallId": call_id}]
            case _:
                assert_never(operation)

    def on_shown(self, operation: op.ShownOperation) -> list[Part]:
        match operation:
            case op.StatusShown(text=text):
                return [{"type": "data-status", "id": "status", "data": {"text": text}}]
            case op.DataShown(name=name, data=data):
                return [{"type": f"data-{name}", "data": data}]
            case op.SteerShown(steer_id=steer_id, status=status, input=text, reason=reason):
                # One data part per steer, its status updated in place (the SDK replaces a part by its id).
                steer = {"status": status} | ({"input": text} if text is not None else {})
                return [{"type": "data-steer", "id": steer_id, "data": steer | ({"reason": reason} if reason else {})}]
            case _:
                assert_never(operation)

    def on_question(self, operation: op.QuestionOperation) -> list[Part]:
        match operation:
            case op.QuestionAsked(question=question, stops=stops):
                return self._waiting_if([_asked(question)], stops)
            case op.QuestionAnswered(input_id=input_id, answer=answer, stops=stops):
                return self._waiting_if([_answered(input_id, answer)], stops)
            case _:
                assert_never(operation)

    def on_child(self, operation: op.ChildOperation) -> list[Part]:
        if isinstance(operation, op.ChildStarted):
            return self._children.started(operation)
        return self._children.ended(operation)

    def on_gap(self, operation: op.GapFound) -> list[Part]:
        # The SDK has no word for it, and saying nothing would be a silent skip.
        return [{"type": "data-gap", "data": operation.gap.model_dump(), "transient": True}]

    def _again(self, kept: op.Operation) -> list[Part]:
        """A part kept after a reset-step, sent again: a child's call with the final output its end gave."""
        if isinstance(kept, op.ToolFinished | op.ToolFailedOp) and (final := self._children.final(kept.call_id)):
            return final
        return self._render(kept)

    def _waiting_if(self, parts: list[Part], stops: bool) -> list[Part]:
        """`parts`, and where the run stops for this stream (at questions still open: the reducer's
        `stops`) the response's end while it waits."""
        if not stops:
            return parts
        self.finished = True
        return [*parts, {"type": "finish-step"}, {"type": "finish", "finishReason": "tool-calls"}]


def _ended(ending: Ending) -> list[Part]:
    match ending:
        case RunCompleted(run_id=run_id, usage=usage):
            metadata = {"run_id": run_id, "usage": usage}
            return [{"type": "finish-step"}, {"type": "finish", "finishReason": "stop", "messageMetadata": metadata}]
        case RunFailed(error=error):
            return [{"type": "error", "errorText": f"{error.type}: {error.message}"}]
        case RunCancelled(reason=reason):
            return [{"type": "abort", "reason": reason}]
        case _:
            assert_never(ending)


def _asked(question: InputRequired) -> Part:
    if question.kind == "approval" and question.call_id:
        return {
            "type": "tool-approval-request",
            "approvalId": question.input_id,
            "toolCallId": question.call_id,
            "reason": question.prompt,
        }
    shown = question.model_dump(by_alias=True, include={"input_id", "kind", "prompt", "answer_schema", "expires_at"})
    return {"type": "data-input", "id": question.input_id, "data": {"expires_at": None, **shown, "answer": None}}


def _answered(input_id: str, answer: Any) -> Part:
    if isinstance(answer, dict) and isinstance(answer.get("approved"), bool):
        reason = {"reason": answer["reason"]} if "reason" in answer else {}
        return {"type": "tool-approval-response", "approvalId": input_id, "approved": answer["approved"], **reason}
    return {"type": "data-input", "id": input_id, "data": {"input_id": input_id, "answer": answer}}
