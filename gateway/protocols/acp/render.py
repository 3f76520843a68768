"""The Agent Client Protocol's messages (what an editor reads: `session/update` notifications, the
agent's requests, a prompt's answer), from a session's stored events, for one connection:

    run.queued            a run this connection did not prompt (a follow-up from elsewhere, a replay of
                          a loaded session's history): `user_message_chunk` with its input
    message.delta         `agent_message_chunk` (reasoning: `agent_thought_chunk`)
    tool.started          `tool_call`, in progress, its arguments as `rawInput`
    tool.completed/failed `tool_call_update`: completed with its result as text content (and
                          `rawOutput`), or failed with the error
    input.required        an approval or a choice: `session/request_permission` (its id names the
                          question: `QUESTION_PREFIX`), its options the answers; a request of the
                          editor's program (`ctx.client_request`: `fs/*`, `terminal/*`): that request,
                          to a connection whose client declared it serves it (`client_methods`), its
                          result the answer; a text or JSON question has no ACP shape: answered
                          through the REST API or the console
    data.plan             `plan`, when its data has `entries` as ACP's plan has them
    run.spawned           the child is the parent's tool call (the spawn's): its text, each block
                          whole, as that call's content; its own tool calls as tool calls
    run ends              of a run this connection prompted: the prompt's answer, `stopReason`
                          `end_turn`, `cancelled`, or `max_tokens` for an answer cut at the output
                          bound (`output_too_large`); another failure, a JSON-RPC error with its type
    the rest              nothing (ACP has no shape for status lines, steers or what a takeover drops)

Every message is a function of the stored events (and of which runs the connection prompted), so any
gateway renders the same for a stream that resumes after an event id.
"""

import json
from collections.abc import Iterable
from typing import Any, assert_never

from tokentail.gateway.reading.renderer import Renderer
from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.vocabulary.events import InputRequired, RunCancelled, RunCompleted, RunFailed
from tokentail.shared.vocabulary.records import SessionRecord

Message = dict[str, Any]

# The id of a `session/request_permission` this gateway sends: `tokentail-q:<session>:<run>:<input id>`,
# so the client's answer, posted to any gateway, names the question it answers.
QUESTION_PREFIX = "tokentail-q:"
ALLOW, REJECT = "allow", "reject"  # an approval's options
FAILED = -32603  # a prompt whose run failed: JSON-RPC's internal error, the run's error in its `data`


def notification(session_id: str, update: dict[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session_id, "update": update}}


def text_chunk(kind: str, text: str) -> dict[str, Any]:
    return {"sessionUpdate": kind, "content": {"type": "text", "text": text}}


TERMINAL_METHODS = frozenset(f"terminal/{name}" for name in ("create", "output", "wait_for_exit", "kill", "release"))


def client_methods(capabilities: dict[str, Any]) -> frozenset[str]:
    """The requests of an agent a client serves, as its `initialize` declared them (`clientCapabilities`)."""
    fs = capabilities.get("fs")
    fs = fs if isinstance(fs, dict) else {}
    served = {
        method
        for method, flag in (("fs/read_text_file", "readTextFile"), ("fs/write_text_file", "writeTextFile"))
        if fs.get(flag) is True
    }
    return frozenset(served | (TERMINAL_METHODS if capabilities.get("terminal") is True else set()))


def question_id(session_id: str, run_id: str, input_id: str) -> str:
    return f"{QUESTION_PREFIX}{session_id}:{run_id}:{input_id}"


def permission_request(session_id: str, run_id: str, question: InputRequired) -> Message | None:
    """The question as ACP asks it: of the editor's program, its request (`client`: `fs/read_text_file`,
    ...); of a person, an approval (allow, reject) or a choice (one option each)."""
    asked_id = question_id(session_id, run_id, question.input_id)
    if question.client is not None:
        params = {**question.client.params, "sessionId": session_id}
        return {"jsonrpc": "2.0", "id": asked_id, "method": question.client.method, "params": params}
    if question.kind == "approval":
        options = [
            {"optionId": ALLOW, "name": "Allow", "kind": "allow_once"},
            {"optionId": REJECT, "name": "Reject", "kind": "reject_once"},
        ]
    elif question.kind == "choice":
        choices = question.answer_schema.get("enum", [])
        options = [{"optionId": str(choice), "name": str(choice), "kind": "allow_once"} for choice in choices]
    else:
        return None
    tool_call = {"toolCallId": question.call_id or question.input_id, "title": question.prompt}
    params = {"sessionId": session_id, "toolCall": tool_call, "options": options}
    return {"jsonrpc": "2.0", "id": asked_id, "method": "session/request_permission", "params": params}


def ended(request_id: Any, ending: RunCompleted | RunFailed | RunCancelled) -> Message:
    """The answer to the prompt whose run ended so."""
    if isinstance(ending, RunFailed) and ending.error.type != "output_too_large":
        error = {"code": FAILED, "message": ending.error.message, "data": {"type": ending.error.type}}
        return {"jsonrpc": "2.0", "id": request_id, "error": error}
    # (an answer cut at the deployment's output bound: a turn ended at its length)
    stop = (
        "end_turn"
        if isinstance(ending, RunCompleted)
        else "cancelled"
        if isinstance(ending, RunCancelled)
        else "max_tokens"
    )
    return {"jsonrpc": "2.0", "id": request_id, "result": {"stopReason": stop}}


def answers_in(session: SessionRecord) -> set[str]:
    """The questions of the session answered by now (its runs', its children's): a stream that opens
    now does not ask them."""
    return {input_id for run in session.runs for input_id in run.answers}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class AcpUpdates(Renderer[Message], op.OperationCases[list[Message]]):
    """One session's messages for one connection: `prompts`, the runs its prompts queued or steered ->
    those requests' ids (kept current by its stream: shared/features/acp_connections.py); `answered`, the
    questions answered when its stream opened (`answers_in`), not asked again; `serves`, the requests of
    an agent its client serves (`client_methods`), the only ones it is sent."""

    def __init__(
        self,
        session_id: str,
        prompts: dict[str, list[Any]] | None = None,
        answered: Iterable[str] = (),
        serves: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(Reducer(answered=answered))
        self.session_id = session_id
        self.serves = serves
        self.prompts = prompts or {}
        self._children: dict[str, str] = {}  # a child run -> its parent's call it is shown in
        self._child_text: dict[str, list[str]] = {}  # a child's block so far, shown whole as it closes

    def render(self, operation: op.Operation) -> list[Message]:
        return self.cases(operation)

    def _update(self, update: dict[str, Any]) -> list[Message]:
        return [notification(self.session_id, update)]

    def on_run(self, operation: op.RunOperation) -> list[Message]:
        match operation:
            case op.RunOpened(run_id=run_id, input=text):
                return [] if run_id in self.prompts else self._update(text_chunk("user_message_chunk", text))
            case op.RunEnded(run_id=run_id, ending=ending):
                return [ended(request_id, ending) for request_id in self.prompts.get(run_id, [])]
            case op.AttemptStarted() | op.ContentDropped():
                return []
            case _:
                assert_never(operation)

    def on_block(self, operation: op.BlockOperation) -> list[Message]:
        match operation:
            case op.BlockAppended(run_id=run_id, kind=kind, text=text):
                if run_id in self._children:
                    self._child_text.setdefault(run_id, []).append(text)
                    return []
                return self._update(
                    text_chunk("agent_message_chunk" if kind == "text" else "agent_thought_chunk", text)
                )
            case op.BlockClosed(run_id=run_id, kind="text") if run_id in self._children:
                said = "".join(self._child_text.pop(run_id, []))
                content = [{"type": "content", "content": {"type": "text", "text": said}}]
                return self._update(
                    {"sessionUpdate": "tool_call_update", "toolCallId": self._children[run_id], "content": content}
                )
            case op.BlockOpened() | op.BlockClosed():
                return []
            case _:
                assert_never(operation)

    def on_tool(self, operation: op.ToolOperation) -> list[Message]:
        match operation:
            case op.ToolCalled(call_id=call_id, name=name, arguments=arguments):
                update = {"sessionUpdate": "tool_call", "toolCallId": call_id, "title": name, "kind": "other"}
                return self._update({**update, "status": "in_progress", "rawInput": arguments})
            case op.ToolFinished(call_id=call_id, result=result):
                content = [{"type": "content", "content": {"type": "text", "text": _as_text(result)}}]
                update = {"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": "completed"}
                return self._update({**update, "content": content, "rawOutput": result})
            case op.ToolFailedOp(call_id=call_id, error=error) | op.ToolDenied(call_id=call_id, error=error):
                content = [{"type": "content", "content": {"type": "text", "text": error}}]
                return self._update(
                    {"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": "failed", "content": content}
                )
            case _:
                assert_never(operation)

    def on_shown(self, operation: op.ShownOperation) -> list[Message]:
        match operation:
            case op.DataShown(name="plan", data={"entries": list(entries)}):
                return self._update({"sessionUpdate": "plan", "entries": entries})
            case op.DataShown() | op.StatusShown() | op.SteerShown():
                return []
            case _:
                assert_never(operation)

    def on_question(self, operation: op.QuestionOperation) -> list[Message]:
        match operation:
            case op.QuestionAsked(run_id=run_id, question=question, answered=False):
                if question.client is not None and question.client.method not in self.serves:
                    return []  # (another editor's to serve, or none's: the run hears so as it expires)
                asked = permission_request(self.session_id, run_id, question)
                return [asked] if asked is not None else []
            case op.QuestionAsked() | op.QuestionAnswered():
                return []
            case _:
                assert_never(operation)

    def on_child(self, operation: op.ChildOperation) -> list[Message]:
        match operation:
            case op.ChildStarted(child_run_id=child, call_id=call_id):
                self._children[child] = call_id
                return []
            case op.ChildEnded():
                return []
            case _:
                assert_never(operation)

    def on_gap(self, operation: op.GapFound) -> list[Message]:
        return []
