"""LangGraph runs: a run is a tokentail run of the thread's session (its `run_id`, `r_…`), of the agent
its `assistant_id` names.

    input            `{"messages": [...]}` (LangChain dicts or `{"role", "content"}`), a string, or
                     `{"input": str}`: the last human message is the run's input (the thread's history
                     stays in tokentail); anything else is a 422
    command.resume   answers the questions the thread's run waits for: a value answers the one open,
                     `{input_id: value, ...}` several; the run goes on (the run returned is that run)
    multitask_strategy  reject (409) | enqueue | interrupt | rollback: tokentail's `multitask`
    if_not_exists    create: a thread never made is made by the run; reject (the default): 404
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tokentail.gateway.access.ids import new_run_id
from tokentail.gateway.commands.branching import fork_at, fork_session
from tokentail.gateway.commands.turns import ChatTurns, check_chat_token_choices, queue_follow_up
from tokentail.gateway.protocols.langgraph.assistants import agent_of
from tokentail.gateway.protocols.langgraph.checkpoints import resolve
from tokentail.gateway.protocols.langgraph.state import iso, waiting_questions
from tokentail.gateway.protocols.langgraph.threads import new_thread_id, thread_session
from tokentail.gateway.schemas import CreateRun
from tokentail.shared.vocabulary.errors import InputNotPending, InvalidInput, SessionNotFound
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord

RunStatus = Literal["pending", "running", "error", "success", "timeout", "interrupted"]


class Command(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    resume: Any = None
    update: Any = None
    goto: Any = None


class RunCreate(BaseModel):
    """The body of `POST /threads/{tid}/runs[/stream|/wait]` (and the threadless `/runs...`), as
    `langgraph-sdk` sends it. Fields tokentail has no use for are taken and ignored (documented in
    docs/langgraph.md)."""

    model_config = ConfigDict(extra="allow", strict=True)

    assistant_id: str
    input: Any = None
    command: Command | None = None
    stream_mode: str | list[str] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    on_disconnect: Literal["cancel", "continue"] = "continue"
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] = "reject"
    if_not_exists: Literal["create", "reject"] = "reject"
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: Any = None
    interrupt_after: Any = None
    checkpoint_id: str | None = None
    after_seconds: float | None = Field(default=None, ge=0)

    @property
    def modes(self) -> list[str]:
        return [self.stream_mode] if isinstance(self.stream_mode, str) else list(self.stream_mode)


def input_text(value: Any) -> str:
    """The run's input: the last human message of `input.messages`, or a plain string."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("input"), str) and "messages" not in value:
        return str(value["input"])
    messages = value.get("messages") if isinstance(value, dict) else None
    if isinstance(messages, str | dict):
        messages = [messages]
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, str):
                return message
            if isinstance(message, dict) and (message.get("type") or message.get("role")) in ("human", "user"):
                return _content_text(message.get("content"))
    raise InvalidInput(
        "input: a run's input is {'messages': [...]} whose last human message is the input, a string, or "
        "{'input': '...'}"
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part if isinstance(part, str) else part.get("text", "") for part in content if isinstance(part, str | dict)
        ]
        return "".join(str(text) for text in texts)
    raise InvalidInput("input: a message's content is a string or a list of text blocks")


def resume_answers(resume: Any, session: SessionRecord) -> dict[str, Any]:
    """`command.resume` as answers by input id: a map naming open questions answers those; any other
    value answers the one open question (several open: name each)."""
    open_ids = [question.input_id for question in waiting_questions(session)]
    if not open_ids:
        raise InputNotPending("command.resume: the thread's run waits for no answer")
    if isinstance(resume, dict) and resume and all(key in open_ids for key in resume):
        return dict(resume)
    if len(open_ids) > 1:
        raise InvalidInput(
            f"command.resume: the run waits for {len(open_ids)} answers: send {{interrupt_id: value}} for {open_ids!r}"
        )
    return {open_ids[0]: resume}


async def _thread(turns: ChatTurns, thread_id: str | None, creating: bool) -> tuple[str, str, SessionRecord | None]:
    """The thread (made here if None), its session's id, and its record (None: never made, and
    `creating` allows it; else 404)."""
    creating = creating or thread_id is None
    thread_id = thread_id or new_thread_id()
    session_id = await thread_session(turns, thread_id)
    try:
        return thread_id, session_id, await turns.store.get_session(session_id)
    except SessionNotFound:
        if not creating:
            raise SessionNotFound(thread_id) from None
        return thread_id, session_id, None


async def resume_run(turns: ChatTurns, thread_id: str | None, body: RunCreate) -> tuple[str, str, RunRecord, int]:
    """Answer the questions the thread's run waits for (`body.command.resume`): the thread's id, its
    session's, the run (it goes on), and the id of the last answer's `input.received`."""
    assert body.command is not None
    thread_id, session_id, session = await _thread(turns, thread_id, creating=False)
    if session is None:
        raise InputNotPending("command.resume: the thread has no run waiting for an answer")
    run, seq = await turns.answer(session, resume_answers(body.command.resume, session))
    return thread_id, session_id, run, seq


async def start_run(turns: ChatTurns, thread_id: str | None, body: RunCreate) -> tuple[str, str, RunRecord]:
    """Start a run of thread `thread_id` (None: a thread made for it) as `body` asks, or answer its
    waiting run (`command.resume`): the thread's id, its session's id, and the run (`queued_seq` set).
    A run created from a checkpoint other than the latest goes on in a branch (`_from_checkpoint`)."""
    if body.command is not None and body.command.resume is not None:
        thread_id, session_id, run, _ = await resume_run(turns, thread_id, body)
        return thread_id, session_id, run
    agent = agent_of(body.assistant_id, turns.settings)
    thread_id, session_id, session = await _thread(turns, thread_id, body.if_not_exists == "create")
    if session is not None and (named := checkpoint_of(body)) is not None:
        branch, going_on = await _from_checkpoint(turns, thread_id, session, named, body.input is None)
        if going_on is not None:
            return thread_id, branch, going_on
        session_id = branch
    asked = CreateRun(input=input_text(body.input), multitask=body.multitask_strategy)
    if session is None:  # (a follow-up checks the chat token's choices itself, knowing the session's user)
        check_chat_token_choices(turns.caller, asked, turns.settings)
        run = RunRecord(run_id=new_run_id(), input=asked.input, agent=agent)
        return thread_id, session_id, await turns.first_run(session_id, run, body.metadata)
    branched = session_id != session.session_id
    args = (turns.store, turns.runs, turns.settings, turns.budget, turns.caller, session_id, asked)
    return thread_id, session_id, await queue_follow_up(*args, agent=agent, spent=branched)


def checkpoint_of(body: RunCreate) -> str | None:
    """The checkpoint a run is created from (`checkpoint_id`, or `checkpoint.checkpoint_id`), as the
    thread's state and history name them (checkpoints.py)."""
    named = (body.model_extra or {}).get("checkpoint")
    raw = body.checkpoint_id
    if raw is None and isinstance(named, dict):
        raw = named.get("checkpoint_id")
    if raw is None or isinstance(raw, str):
        return raw
    raise InvalidInput(f"checkpoint_id: {raw!r} is not one of this thread's checkpoints (a string)")


async def _from_checkpoint(
    turns: ChatTurns, thread_id: str, session: SessionRecord, checkpoint_id: str, no_input: bool
) -> tuple[str, RunRecord | None]:
    """The session a run created from checkpoint `checkpoint_id` goes in, and, when it is no new run,
    the run that goes on there. The latest checkpoint: the thread's session, as without one. Else a
    branch, which the thread follows from now on, as a chat's regenerate or edit does: with no input
    (LangGraph's run from a checkpoint, useStream's regenerate), a fork there (`fork_at`) whose run goes
    on from that step, replaying the steps it had recorded (tools are not run again); with input, a
    fork at a run's end (or the thread's start), where the new run is queued."""
    source, at = await resolve(turns, thread_id, checkpoint_id)
    if source.session_id == session.session_id and at == session.last_event_id and not no_input:
        return session.session_id, None
    going = source.run_shown_at(at)
    if going is not None and not no_input:
        raise InvalidInput(
            f"checkpoint_id: {checkpoint_id!r} is inside run {going.run_id} (one of its steps): a run with input "
            "starts from a run's end or the thread's start (its input's parent_checkpoint); send no input to go "
            "on from this step"
        )
    made = (turns.store, turns.runs, turns.settings, turns.budget, source.session_id, at)
    fork = await (fork_at(*made, go_on=True) if no_input else fork_session(*made))
    await turns.runs.point_chat(await turns.auth.chat_root(turns.caller, thread_id, turns.store), fork.session_id)
    return fork.session_id, fork.active_run if no_input else None


def run_status(run: RunRecord, session: SessionRecord) -> RunStatus:
    """A run's status as LangGraph names it: a run waiting for answers is `success` (LangGraph's run
    ends at its interrupt; the thread is `interrupted`), one waiting for its child runs `running`."""
    match run.status:
        case "queued":
            return "pending"
        case "running":
            return "running"
        case "waiting":
            return "success" if run.run_id == session.active_run_id and waiting_questions(session) else "running"
        case "completed":
            return "success"
        case "failed":
            return "error"
    return "interrupted"


def run_json(thread_id: str, run: RunRecord, session: SessionRecord, assistant_id: str) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "thread_id": thread_id,
        "assistant_id": assistant_id,
        "created_at": iso(run.queued_at),
        "updated_at": iso(run.finished_at or run.started_at or run.queued_at),
        "status": run_status(run, session),
        "metadata": {},
        "multitask_strategy": "reject",
        "kwargs": {"input": {"messages": [{"type": "human", "content": run.input}]}},
    }
