"""MCP (revision 2026-07-28, with the Tasks extension `io.modelcontextprotocol/tasks`): what a run is
on MCP's wire. An agent is a tool; a call of it is a task (a flat `CreateTaskResult`), or, when its
run ended or asked within the call's wait, a tool result or an `InputRequiredResult` (SEP-2322); a
task's `tasks/get` is a `DetailedTask`.

    run                               MCP
    an agent                          a tool: its name, description, input schema, execution.taskSupport
    completed, output                 completed, result.content [{type: text, text: output}]
    failed, the agent's own error     completed, result.isError: true (a tool that failed)
    failed, of tokentail's making     failed, error {code: -32603, message, data: {type}}
    cancelled                         cancelled
    waiting on a question             input_required, inputRequests {input_id: elicitation/create}
    an answer (tasks/update)          inputResponses {input_id: {action: accept, content}}
    in line, or waiting for children  working
    a child run (ctx.spawn)           inside its parent's task (no task of its own): its questions are
                                      the task's, keyed `<child run id>:<input id>`; the parent's
                                      output, which takes the child's answer, is the task's result

A task is its session's run and the runs it started (its children, theirs: docs/subagents.md), so
the task waits for input when any run of that tree does, and is working while any of them is.

The question's answer schema is the elicitation's `requestedSchema` when it is an object (an
approval, a JSON question of an object); any other (text, a choice, a number) is put under one
property, `answer`, and taken out of the response again, as elicitation asks for an object.

A call that waits with a progress token (`_meta.progressToken`) is sent the run as it goes, as
`notifications/progress` (`Progress`, a renderer of the reducer): each text delta, tool call (a
child run is its parent's call of it), status and question (a child's too) a message, numbered in
order.
"""

from datetime import UTC, datetime
from typing import Any, assert_never

from pydantic import BaseModel

from tokentail.gateway.commands.tasks import Task
from tokentail.gateway.reading.renderer import Renderer
from tokentail.gateway.reducer import operations as op
from tokentail.shared.features.agent_catalog import AgentInfo
from tokentail.shared.vocabulary.records import Question, RunRecord
from tokentail.shared.vocabulary.run_tree import descendants

TASKS = "io.modelcontextprotocol/tasks"
INTERNAL_ERROR = -32603  # JSON-RPC's: a failure of the server's making, not the tool's
POLL_INTERVAL_MS = 500  # what a client polling tasks/get is told to wait between polls
_WRAPPED = "answer"  # the one property a question whose answer is not an object is asked under


def tool(info: AgentInfo) -> dict[str, Any]:
    """An agent, as `tools/list` shows it."""
    return {
        "name": info.name,
        "description": info.description or f"the {info.name} agent",
        "inputSchema": info.input_schema,
        "execution": {"taskSupport": info.task_support},
    }


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Asked = dict[str, tuple[RunRecord, Question]]  # what a task waits on, by input request key: the run asking, and what


def questions(task: Task) -> Asked:
    """The questions the task waits on: its run's, keyed by their input ids, and those of the runs it
    started that are still going (a child's branch before its next sibling's), keyed
    `<run id>:<input id>` (unique over the task's life, as the Tasks extension asks of a key); none
    once the task has ended."""
    if task.terminal:
        return {}
    asked: Asked = {question.input_id: (task.run, question) for question in task.run.questions}
    for run in descendants(task.session.runs, task.run.run_id, depth_first=True):
        if run.active:
            asked |= {f"{run.run_id}:{question.input_id}": (run, question) for question in run.questions}
    return asked


def status(task: Task) -> str:
    """The task's status on MCP's wire: its run's end, else whether a run of its tree waits for input
    (a run in line, or waiting for its children, is working: MCP has no `submitted`)."""
    if task.terminal:
        return task.status
    return "input_required" if questions(task) else "working"


def _task_fields(task: Task, ttl_seconds: int) -> dict[str, Any]:
    return {
        "taskId": task.id,
        "status": status(task),
        "createdAt": _timestamp(task.created_at),
        "lastUpdatedAt": _timestamp(task.updated_at),
        "ttlMs": ttl_seconds * 1000,  # a finished session is kept this long, and its task with it
        "pollIntervalMs": POLL_INTERVAL_MS,
    }


def created(task: Task, ttl_seconds: int) -> dict[str, Any]:
    """The flat `CreateTaskResult` a tool call answers with when its run goes on as a task."""
    return {"resultType": "task", **_task_fields(task, ttl_seconds)}


def detailed(task: Task, ttl_seconds: int) -> dict[str, Any]:
    """`tasks/get`'s `DetailedTask`: a completed task inlines its tool result, a failed one its
    JSON-RPC error, one that waits its input requests."""
    fields = _task_fields(task, ttl_seconds)
    if task.status == "completed" or task.agent_failed:
        fields["status"] = "completed"
        fields["result"] = tool_result(task)
    elif task.status == "failed":
        fields["error"] = protocol_error(task)
    elif fields["status"] == "input_required":
        fields["inputRequests"] = input_requests(questions(task))
    return fields


def tool_result(task: Task) -> dict[str, Any]:
    """What a task that ended as a tool call ends is: its output, or its agent's error (`isError`)."""
    if task.agent_failed and task.error is not None:
        return {"resultType": "complete", "content": [{"type": "text", "text": task.error.message}], "isError": True}
    return {"resultType": "complete", "content": [{"type": "text", "text": task.output or ""}], "isError": False}


def protocol_error(task: Task) -> dict[str, Any]:
    """A run that failed for a reason of tokentail's making (a bound, lost workers), as a JSON-RPC error."""
    error = task.error
    kind, message = (error.type, error.message) if error is not None else ("failed", "the run failed")
    return {"code": INTERNAL_ERROR, "message": message, "data": {"type": kind}}


def input_required(asked: Asked, request_state: str) -> dict[str, Any]:
    """The `InputRequiredResult` a tool call answers with when its task asks within the call's wait;
    `request_state` brings the client's retry back to the same task."""
    return {"resultType": "input_required", "inputRequests": input_requests(asked), "requestState": request_state}


def input_requests(asked: Asked) -> dict[str, Any]:
    """The questions the task waits on as input requests, by their keys."""
    return {key: _input_request(question) for key, (_, question) in asked.items()}


def _input_request(question: Question) -> dict[str, Any]:
    schema = question.answer_schema
    if schema.get("type") != "object":
        schema = {"type": "object", "properties": {_WRAPPED: schema}, "required": [_WRAPPED]}
    params = {"mode": "form", "message": question.prompt, "requestedSchema": schema}
    return {"method": "elicitation/create", "params": params}


class Declined(Exception):
    """The person declined the question, or dismissed it (an elicitation's `decline`, `cancel`)."""


def answer_of(key: str, question: Question, responses: dict[str, Any] | None) -> tuple[bool, Any]:
    """(True, the answer) if `responses` answers the question asked under `key` (other keys are not for
    it: ignored), else (False, None). Raises `Declined` for a response that gives no answer."""
    response = (responses or {}).get(key)
    if isinstance(response, BaseModel):  # as the SDK parsed a tool call's (an `ElicitResult`)
        response = response.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not isinstance(response, dict):
        return False, None
    if response.get("action") != "accept":
        raise Declined(key)
    content = response.get("content")
    if question.answer_schema.get("type") != "object" and isinstance(content, dict):
        return True, content.get(_WRAPPED)
    return True, content


class Progress(Renderer[str], op.OperationCases[list[str]]):
    """A run's events as the messages of MCP progress notifications, while its tool call waits (until
    the run ends or stops at a question: gateway/reading/settling.py)."""

    def render(self, operation: op.Operation) -> list[str]:
        if isinstance(operation, op.QuestionAsked) and not operation.answered:
            return [operation.question.prompt]  # the task's question, whichever run of its tree asks it
        if not isinstance(operation, op.GapFound) and operation.run_id != self.reducer.run_id:
            return []  # a child run's own work: the task shows its parent's call of it (`calling <name>`)
        return self.cases(operation)

    def on_run(self, operation: op.RunOperation) -> list[str]:
        if isinstance(operation, op.ContentDropped) and operation.after == 0:
            return ["its worker stopped: the agent starts again"]
        return []

    def on_block(self, operation: op.BlockOperation) -> list[str]:
        return (
            [operation.text]
            if isinstance(operation, op.BlockAppended) and operation.kind == "text" and operation.text
            else []
        )

    def on_tool(self, operation: op.ToolOperation) -> list[str]:
        match operation:
            case op.ToolCalled(name=name):
                return [f"calling {name}"]
            case op.ToolFailedOp(error=error) | op.ToolDenied(error=error):
                return [f"a tool call failed: {error}"]
            case op.ToolFinished():
                return []
            case _:
                assert_never(operation)

    def on_shown(self, operation: op.ShownOperation) -> list[str]:
        return [operation.text] if isinstance(operation, op.StatusShown) else []

    def on_question(self, operation: op.QuestionOperation) -> list[str]:
        return []  # an open one: `render`

    def on_child(self, operation: op.ChildOperation) -> list[str]:
        return []

    def on_gap(self, operation: op.GapFound) -> list[str]:
        return []
