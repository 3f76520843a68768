"""The v2 protocol's commands (`POST /threads/{thread_id}/commands`, and the same frames on its
WebSocket): `{"id", "method", "params"}` in, `{"type": "success", "id", "result"}` or `{"type":
"error", "id", "error": <code>, "message"}` out.

    run.start        a run of the thread: `params` as the v1 run body (`assistant_id`, `input`, `config`,
                     `metadata`, `multitask_strategy`), through runs.start_run; result {run_id}
    input.respond    answers: `{interrupt_id, response}` or `{responses: [{interrupt_id, response}]}`
                     (an interrupt is a question: its id the question's input id); result {run_id}
    input.inject     a steer of the active run (docs/steering.md) with `message.content`; result {}
    state.get        the thread's values (`{messages: [...]}`, as `GET /threads/{tid}/state` has them)
    agent.getTree    the run's tree (the thread's last run, or `params.run_id`): each child run a node,
                     its namespace as the stream names it
    state.listCheckpoints  the thread's checkpoints, newest first (`limit`, `before`), as v1's history
                     lists them (checkpoints.py): {checkpoints: [{id, timestamp, step, node_name,
                     metadata}]}, `metadata.parent_id` the one before it in its branch
    state.fork       a run from checkpoint `checkpoint_id` (with `input`, or none to go on from that
                     step), as v1's run created from one: the thread goes on in a branch; {run_id, thread_id}

Not served: `subscription.*` over HTTP (`not_supported`: the WebSocket's; an SSE stream is its own
subscription).
"""

from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tokentail.gateway.access.ids import new_steer_id
from tokentail.gateway.commands.turns import ChatTurns, steer_active_run
from tokentail.gateway.protocols.langgraph.checkpoints import page, thread_history
from tokentail.gateway.protocols.langgraph.runs import Command as RunsCommand
from tokentail.gateway.protocols.langgraph.runs import RunCreate, input_text, resume_answers, start_run
from tokentail.gateway.protocols.langgraph.state import checkpoint_name, shown_runs, thread_values, waiting_questions
from tokentail.gateway.protocols.langgraph.threads import read_thread
from tokentail.gateway.protocols.langgraph.v2.render import Namespace
from tokentail.gateway.schemas import SteerRequest
from tokentail.shared.vocabulary.errors import (
    Forbidden,
    InputNotPending,
    InvalidInput,
    QuestionNotFound,
    RateLimited,
    RunNotActive,
    RunNotFound,
    SessionNotFound,
    TokentailError,
    Unauthorized,
)
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord

NOT_SUPPORTED = {
    "subscription.subscribe": "over HTTP, each POST /threads/{thread_id}/stream/events is its own subscription",
    "subscription.unsubscribe": "over HTTP, closing the stream unsubscribes",
    "subscription.reconnect": "over HTTP, send Last-Event-ID (or `since`) with POST /threads/{thread_id}/stream/events",
}


class Command(BaseModel):
    # Its name in the OpenAPI document comes from its module's, as runs.Command shares "Command": the one it
    # had before v2/ was a package (v2_commands.py), so that the document's names stay what clients knew.
    __module__ = "tokentail.gateway.protocols.langgraph.v2_commands"
    model_config = ConfigDict(extra="allow", strict=True)  # `"id": false` is no command id
    id: int = Field(ge=0, description="the client's number for the command, which its response carries")
    method: str = Field(
        description="`run.start`, `input.respond`, `input.inject`, `state.get`, `state.listCheckpoints`, "
        "`state.fork`, `agent.getTree`"
    )
    params: dict[str, Any] = Field(default_factory=dict)


class CommandFailed(Exception):
    """A command refused with one of the protocol's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def success(command_id: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "success", "id": command_id, "result": result}


def failure(command_id: int | None, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "id": command_id, "error": code, "message": message}


def error_code(error: TokentailError) -> str:
    """The protocol's error code for one of tokentail's errors."""
    match error:
        case InputNotPending() | QuestionNotFound():
            return "no_such_interrupt"
        case RunNotActive() | RunNotFound() | SessionNotFound():
            return "no_such_run"
        case Forbidden() | Unauthorized():
            return "permission_denied"
        case InvalidInput():
            return "invalid_argument"
    return "invalid_argument"


class V2Commands:
    """The commands of one thread (`thread_id`, the chat id), for the caller `turns` is for."""

    def __init__(self, turns: ChatTurns, thread_id: str) -> None:
        self.turns = turns
        self.thread_id = thread_id

    async def answer(self, command: Command) -> dict[str, Any]:
        """The command's response. Who may not call (401, 403) and a spent budget (429) raise: the
        HTTP route answers them with their status, as the SDK retries a 429."""
        if command.method in NOT_SUPPORTED:
            return failure(command.id, "not_supported", NOT_SUPPORTED[command.method])
        handler = {
            "run.start": self.run_start,
            "input.respond": self.input_respond,
            "input.inject": self.input_inject,
            "state.get": self.state_get,
            "agent.getTree": self.agent_tree,
            "state.listCheckpoints": self.list_checkpoints,
            "state.fork": self.fork,
        }.get(command.method)
        if handler is None:
            return failure(command.id, "unknown_command", f"tokentail serves no command {command.method!r}")
        try:
            return success(command.id, await handler(command.params))
        except CommandFailed as failed:
            return failure(command.id, failed.code, str(failed))
        except ValidationError as invalid:
            return failure(command.id, "invalid_argument", str(invalid))
        except (Unauthorized, RateLimited):
            raise
        except TokentailError as error:
            return failure(command.id, error_code(error), str(error))
        except HTTPException as refused:  # an assistant not in the catalog (assistants.py)
            return failure(command.id, "invalid_argument", str(refused.detail))

    async def _session(self) -> SessionRecord:
        return await self.turns.store.get_session(await self.turns.session(self.thread_id))

    async def run_start(self, params: dict[str, Any]) -> dict[str, Any]:
        """The protocol's one entry point for input: a run when none is active (the thread made by its
        first); the answer to the questions the run waits for (`input` the resume value); a steer of
        a run going (unless `multitask_strategy` says otherwise: then as v1's runs do)."""
        strategy = params.get("multitask_strategy", params.get("multitaskStrategy"))
        body = RunCreate.model_validate(
            {
                "assistant_id": params.get("assistant_id"),
                "input": params.get("input"),
                "metadata": params.get("metadata"),
                "config": params.get("config"),
                "if_not_exists": "create",
                **({"multitask_strategy": strategy} if strategy is not None else {}),
            }
        )
        session = await self._session_or_none()
        active = session.active_run if session is not None else None
        if active is not None and session is not None and waiting_questions(session):
            body.command = RunsCommand(resume=body.input)
        elif active is not None and strategy is None:
            text = input_text(body.input)
            return await self.input_inject({"message": {"role": "user", "content": text}}) | {"run_id": active.run_id}
        _, _, run = await start_run(self.turns, self.thread_id, body)
        return {"run_id": run.run_id}

    async def input_respond(self, params: dict[str, Any]) -> dict[str, Any]:
        """Answers to the questions the thread's run waits for, by interrupt id (the questions' input ids)."""
        entries = params.get("responses")
        if not isinstance(entries, list):
            entries = [params]
        answers: dict[str, Any] = {}
        for entry in entries:
            interrupt_id = entry.get("interrupt_id") if isinstance(entry, dict) else None
            if not isinstance(interrupt_id, str) or "response" not in entry:
                raise CommandFailed(
                    "invalid_argument", "input.respond takes {interrupt_id, response} (or responses: [...])"
                )
            answers[interrupt_id] = entry["response"]
        session = await self._session()
        run, _ = await self.turns.answer(session, resume_answers(answers, session))
        return {"run_id": run.run_id}

    async def state_get(self, params: dict[str, Any]) -> dict[str, Any]:
        """The thread's values, as `GET /threads/{tid}/state` has them; `keys` picks some."""
        if params.get("namespace"):
            raise CommandFailed("no_such_namespace", "a thread's state is its root's (namespace [])")
        session, events = await read_thread(self.turns.store, await self.turns.session(self.thread_id))
        values = thread_values(session, events)
        keys = params.get("keys")
        if isinstance(keys, list):
            values = {key: value for key, value in values.items() if key in keys}
        return {"values": values, "checkpoint": {"id": checkpoint_name(session, session.last_event_id), "ns": ""}}

    async def list_checkpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        """The thread's checkpoints, newest first, as v1's history lists them (`limit`, `before`: an id)."""
        if params.get("namespace"):
            raise CommandFailed("no_such_namespace", "a thread's checkpoints are its root's (namespace [])")
        limit = params.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise CommandFailed("invalid_argument", "state.listCheckpoints: limit is a number")
        states = page(await thread_history(self.turns, self.thread_id), limit, params.get("before"), None)
        return {"checkpoints": [_summary(state) for state in states]}

    async def fork(self, params: dict[str, Any]) -> dict[str, Any]:
        """A run from checkpoint `checkpoint_id`: with `input`, a new run from there; with none, the run
        going there goes on from that step; either in a branch the thread follows (runs.start_run)."""
        checkpoint_id = params.get("checkpoint_id")
        if not isinstance(checkpoint_id, str):
            raise CommandFailed("invalid_argument", "state.fork takes checkpoint_id (an id state.listCheckpoints gave)")
        session = await self._session()
        runs = shown_runs(session)
        agent = params.get("assistant_id") or (runs[-1].agent if runs else None) or session.agent or "assistant"
        body = RunCreate.model_validate(
            {
                "assistant_id": agent,
                "input": params.get("input"),
                "config": params.get("config"),
                "checkpoint_id": checkpoint_id,
            }
        )
        thread_id, _, run = await start_run(self.turns, self.thread_id, body)
        return {"run_id": run.run_id, "thread_id": thread_id}

    async def _session_or_none(self) -> SessionRecord | None:
        try:
            return await self._session()
        except SessionNotFound:
            return None

    async def input_inject(self, params: dict[str, Any]) -> dict[str, Any]:
        """A steer of the thread's active run: the message's content, taken in at its next boundary."""
        message = params.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str) or not content:
            raise CommandFailed("invalid_argument", "input.inject takes message: {role, content}, content a string")
        if params.get("namespace"):
            raise CommandFailed("no_such_namespace", "a steer goes to the thread's run (namespace [])")
        turns = self.turns
        session_id = await turns.session(self.thread_id)
        body = SteerRequest(input=content)
        accepted = await steer_active_run(
            turns.runs, turns.settings, turns.budget, turns.caller.tenant, session_id, body, new_steer_id()
        )
        return {"run_id": accepted.run_id, "steer_id": accepted.steer_id}

    async def agent_tree(self, params: dict[str, Any]) -> dict[str, Any]:
        session = await self._session()
        run_id = params.get("run_id")
        roots = [run for run in session.runs if run.parent_run_id is None]
        root = session.run(run_id) if isinstance(run_id, str) else (roots[-1] if roots else None)
        if root is None:
            raise CommandFailed(
                "no_such_run", f"the thread has no run {run_id!r}" if run_id else "the thread has no run"
            )
        return {"tree": _node(session, root, [])}


_STATUS = {
    "queued": "started",
    "running": "running",
    "waiting": "interrupted",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "failed",
}


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    """A history state as the protocol's CheckpointSummary: `node_name`, the node that wrote it."""
    metadata, after = state["metadata"], state["next"]
    node = "agent" if after in ([], ["tools"]) else "tools" if metadata["source"] == "loop" else None
    parent = state["parent_checkpoint"]
    return {
        "id": state["checkpoint"]["checkpoint_id"],
        "timestamp": state["created_at"],
        "step": metadata["step"],
        **({"node_name": node} if node is not None and metadata["run_id"] else {}),
        "metadata": {**metadata, "parent_id": parent["checkpoint_id"] if parent else None, "next": after},
    }


def _node(session: SessionRecord, run: RunRecord, namespace: Namespace) -> dict[str, Any]:
    """A run as the protocol's AgentTreeNode, its children (by `parent_run_id`) below it."""
    children = [child for child in session.runs if child.parent_run_id == run.run_id]
    node: dict[str, Any] = {
        "namespace": namespace,
        "status": _STATUS.get(run.status, "running"),
        "graph_name": run.agent or session.agent or "assistant",
        "metadata": {"run_id": run.run_id, **({"call_id": run.call_id} if run.call_id else {})},
    }
    if children:
        node["children"] = [
            _node(session, child, [*namespace, f"{child.agent or 'agent'}:{child.run_id}"]) for child in children
        ]
    return node
