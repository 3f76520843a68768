"""A run as the agent protocols show it: a task (MCP's Tasks extension, A2A's tasks).

Every protocol is a thin user of this: what a task's status is, whether a failure was the agent's own
or tokentail's, and how a task is started, found, answered and cancelled (for the calling tenant
only), are decided here once. A task's id names its session and its run (shared/vocabulary/response_ids.py), so
any gateway finds it with no lookup; its record in Redis is the only state, so a task outlives the
gateway that started it and the worker that runs it.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.gateway.commands.questions import answer_all
from tokentail.gateway.commands.turns import RunCommands, check_agent_name, check_size, queue_follow_up
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.settling import wait_until_settled
from tokentail.gateway.schemas import END_USER, MAX_USER_CHARS, CreateRun
from tokentail.shared.vocabulary.catalog import DEFAULT_AGENT
from tokentail.shared.vocabulary.errors import InputNotPending, InvalidInput, RunNotFound, SessionNotFound, TaskNotFound
from tokentail.shared.vocabulary.events import ErrorInfo
from tokentail.shared.vocabulary.records import Question, RunRecord, SessionRecord
from tokentail.shared.vocabulary.response_ids import parse_task_id, task_id

TaskStatus = Literal["submitted", "working", "input_required", "completed", "failed", "cancelled"]
TERMINAL: frozenset[TaskStatus] = frozenset({"completed", "failed", "cancelled"})
SETTLED: frozenset[TaskStatus] = TERMINAL | {"input_required"}  # where a call that waits for its task returns

# The `error.type`s of a run that failed for a reason of tokentail's making (worker/run/job.py's
# `_error_info`, worker/run/retry.py, requeue_run.lua): one of its bounds (the run's time, a model's
# silence past the first-token or idle timeout, sizes, a question left unanswered, a blocked event
# loop) or its workers lost (`attempts_exhausted`). Any other failure is the agent's own: its code
# raised, its model's API refused it (`invalid_request`, `rate_limited`, ...), or it names no model.
TOKENTAIL_FAILURES = frozenset(
    {
        "attempts_exhausted",
        "timeout",
        "blocked_event_loop",
        "output_too_large",
        "event_too_large",
        "step_too_large",
        "input_expired",
    }
)


@dataclass(frozen=True)
class Task:
    session: SessionRecord
    run: RunRecord

    @property
    def id(self) -> str:
        return task_id(self.session.session_id, self.run.run_id)

    @property
    def agent(self) -> str:
        return self.run.agent or self.session.agent or DEFAULT_AGENT

    @property
    def status(self) -> TaskStatus:
        run = self.run
        match run.status:
            case "queued":
                # In line again after a takeover or an answer, it is under way as far as a client knows.
                return "working" if run.attempt or run.resumes else "submitted"
            case "running":
                return "working"
            case "waiting":  # for answers; or for its children alone (docs/subagents.md): under way
                return "working" if run.awaiting and not run.waiting_for else "input_required"
            case other:
                return other

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def agent_failed(self) -> bool:
        """It failed with the agent's own error (a tool that failed, for MCP), not tokentail's."""
        error = self.run.error
        return self.run.status == "failed" and error is not None and error.type not in TOKENTAIL_FAILURES

    @property
    def created_at(self) -> float:
        return self.run.queued_at or self.session.created_at

    @property
    def updated_at(self) -> float:
        """Its last change: queued, started (an answer's resume too), a question asked, ended."""
        run = self.run
        asked = run.asked[-1].asked_at if run.asked else None
        return max(t for t in (run.finished_at, asked, run.started_at, run.queued_at, self.session.created_at) if t)

    @property
    def output(self) -> str | None:
        return self.run.output

    @property
    def error(self) -> ErrorInfo | None:
        return self.run.error

    @property
    def questions(self) -> list[Question]:
        """What it waits for answers to (status `input_required`): one question, or several asked at once."""
        return self.run.questions


def end_user(value: object) -> str | None:
    """The end user a protocol's metadata names (`user`), checked as a request's `user` is; none if
    it names none (or the empty text)."""
    if value is None or value == "":
        return None
    try:
        return END_USER.validate_python(value, strict=True)
    except ValidationError:
        raise InvalidInput(f"user: expected text of at most {MAX_USER_CHARS} characters") from None


class RunTasks(RunCommands):
    """Tasks, for the calling tenant: another tenant's, like a missing one, is `TaskNotFound`."""

    async def start(
        self,
        agent: str,
        text: str,
        context_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        task_push: bool = False,
        user: object = None,
    ) -> Task:
        """Queue a run of `agent` on `text`: in a new session, or as the next turn of the session
        `context_id` (which must be the caller's, and of that agent). `task_push`: the task is given
        push configs, so its session is marked for them in the step that queues it. `user`: the
        end user, as the protocol's metadata named it (docs/api.md, Fair admission), checked here."""
        check_size(text, self.settings)
        user = end_user(user)
        check_agent_name(agent, self.settings)
        if context_id is not None:
            session = await self._session(context_id)
            if (had := session.agent or DEFAULT_AGENT) != agent:
                raise InvalidInput(f"context {context_id!r} is a conversation with agent {had!r}, not {agent!r}")
            follow_up = CreateRun(input=text, user=user)
            args = (self.store, self.runs, self.settings, self.budget, self.caller, context_id, follow_up)
            run = await queue_follow_up(*args, task_push=task_push)
            return await self._task(context_id, run.run_id)
        await self.budget.spend(self.caller.tenant)
        session = (await self._new_session(agent, metadata)).model_copy(update={"user": user})
        run = RunRecord(run_id=new_run_id(), input=text, agent=session.agent)
        await self.runs.queue_run(session.session_id, run, create=session, task_push=task_push)
        return await self._task(session.session_id, run.run_id)

    async def _new_session(self, agent: str, metadata: dict[str, Any] | None = None) -> SessionRecord:
        """The record of a new session of the caller's with `agent` (not made yet)."""
        return SessionRecord(
            session_id=new_session_id(),
            created_at=time.time(),
            tenant=self.caller.tenant,
            agent=None if agent == DEFAULT_AGENT else agent,
            metadata=metadata or {},
            webhook=await self.webhooks.url_for(self.caller.tenant),  # its tenant's, as any session it makes
        )

    async def get(self, task_id: str) -> Task:
        parsed = parse_task_id(task_id)
        if parsed is None:
            raise TaskNotFound(task_id)
        try:
            return await self._task(*parsed)
        except (SessionNotFound, RunNotFound):
            raise TaskNotFound(task_id) from None

    async def answer(self, task: Task, answers: dict[str, Any]) -> Task:
        """Answer questions the task waits on (`answers` by input id: some or all of them, checked
        first); the run goes on, on any worker, once each question it waits on has its answer."""
        if not task.questions:
            raise InputNotPending(f"task {task.id!r} waits for no answer (it is {task.status})")
        await answer_all(self.runs, task.session.session_id, task.run, answers)
        return await self.get(task.id)

    async def cancel(self, task: Task) -> Task:
        """Cancel the task's run, from any gateway: idempotent, and nothing for one that has ended."""
        if not task.terminal:
            await self.runs.cancel_run(task.session.session_id, task.run.run_id)
        return await self.get(task.id)

    async def settle(
        self,
        task: Task,
        hub: StreamHub,
        seconds: float,
        transport: str,
        each: Callable[[Batch], Awaitable[None]] | None = None,
    ) -> Task:
        """The task once its run has ended or stopped at a question, or as it is after `seconds`,
        followed from any gateway. `each`: given every batch of events read meanwhile. Read from the
        run's start while it has asked nothing (none of its events can have settled it: its record
        says so), so `each` misses none of what the worker wrote before the record was read; else
        from what its record had seen (its earlier questions are not this wait's)."""
        if task.status in SETTLED:
            return task
        run = task.run
        after = task.session.last_event_id if run.asked else (run.queued_seq or 1) - 1
        await wait_until_settled(hub, task.session.session_id, run.run_id, after, seconds, transport, each)
        return await self.get(task.id)

    async def of_session(self, session_id: str) -> list[Task]:
        """The tasks of one of the caller's sessions, oldest first."""
        session = await self._session(session_id)
        return [Task(session, run) for run in session.runs]

    async def _session(self, session_id: str) -> SessionRecord:
        await self.auth.check_access(self.caller, session_id, self.store)
        return await self.store.get_session(session_id)

    async def _task(self, session_id: str, run_id: str) -> Task:
        session = await self._session(session_id)
        run = next((run for run in session.runs if run.run_id == run_id), None)
        if run is None:
            raise RunNotFound(session_id, run_id)
        return Task(session, run)
