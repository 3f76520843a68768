"""MCP's tools and tasks over tokentail's runs: each agent of the deployment is a tool, and a call of
it a run. An extension of the `mcp` SDK's server (`mcp.server.extension`), which serves the wire
(Streamable HTTP, JSON-RPC, the 2026-07-28 envelope, `requestState`'s sealing): the Tasks
extension's methods (`tasks/get`, `tasks/update`, `tasks/cancel`), a `tools/call` interceptor for the
agents, and a middleware that lists them (`tools/list`) beside the server's own tools.

A call waits for its run to settle (end, or ask a question) for a short while if the client declared
the Tasks extension (`TOKENTAIL_MCP_TASK_AFTER_SECONDS`), else up to `TOKENTAIL_MCP_WAIT_SECONDS`. It
answers with what the run reached: the tool result; its question, as an `InputRequiredResult` whose
`requestState` names the run, so the client's retry with the answer goes on with the same run
(SEP-2322); or, still running, a task. Every answer reads the run's record, so any gateway serves
any call, retry or poll of a run another gateway started.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    REQUEST_TIMEOUT,
    CallToolRequestParams,
    RequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field
from starlette.requests import Request

from tokentail.gateway.commands.questions import check_answer
from tokentail.gateway.commands.tasks import RunTasks, Task
from tokentail.gateway.deps import run_commands, streams_for
from tokentail.gateway.errors import describe
from tokentail.gateway.protocols.mcp import render
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.settling import wait_until_settled
from tokentail.gateway.reading.streams import Streams
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.features.agent_catalog import AgentDirectory
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.errors import (
    InputNotPending,
    InputTooLarge,
    InvalidInput,
    RateLimited,
    TaskNotFound,
)
from tokentail.shared.vocabulary.events import EventType
from tokentail.shared.vocabulary.records import RunRecord

logger = logging.getLogger(__name__)

# A tenant over its runs per minute or its open streams: JSON-RPC leaves -32000 to -32099 to servers.
RATE_LIMITED = -32029


class TaskParams(RequestParams):
    task_id: str


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Calls:
    """What one MCP request reaches of the gateway: the caller's tasks, the agents, the hub."""

    tasks: RunTasks
    agents: AgentDirectory
    settings: Settings
    request: Request
    streams: Streams

    @classmethod
    def of(cls, ctx: ServerRequestContext[Any, Any]) -> "Calls":
        request = ctx.request
        assert isinstance(request, Request), "served over HTTP only (gateway/protocols/mcp/routes.py)"
        state = request.app.state
        caller = request.state.caller  # authenticated by the route, before the SDK read the request
        tasks, streams = run_commands(RunTasks, request, caller), streams_for(request, caller)
        return cls(tasks, state.agents, state.settings, request, streams)

    async def task(self, task_id: str) -> Task:
        """The caller's task `task_id`: a session's own run (a child run is inside its parent's task,
        with no task of its own: `TaskNotFound`, as for a task that is not there)."""
        task = await self.tasks.get(task_id)
        if task.run.parent_run_id is not None:
            raise TaskNotFound(task_id)
        return task

    async def settle(self, task: Task, seconds: float, ctx: ServerRequestContext[Any, Any]) -> Task:
        """The task once its run ended or a run of its tree asked, or as it is after `seconds`; its
        client, if it gave a progress token, told how the run goes meanwhile. (Not `RunTasks.settle`,
        which knows one run: a parent waiting for its children is settled there.)"""
        if render.status(task) != "working":
            return task
        run, read = task.run, task.session.last_event_id
        # From the run's start while it has asked nothing, so that progress misses none of what the
        # worker wrote before the record was read (as RunTasks.settle reads); else from the record.
        after = read if run.asked else (run.queued_seq or 1) - 1
        progress = render.Progress(Reducer(run_id=run.run_id)) if _progress_token(ctx) else None
        sent = 0

        async def each(batch: Batch) -> None:
            nonlocal sent
            for messages, _ in progress.rendered(batch) if progress is not None else ():
                for message in messages:
                    sent += 1
                    await ctx.session.report_progress(sent, None, message)
            if any(event.type == _ASKED and event.seq > read for event in batch.events):
                raise _ChildAsked  # a question of the task's (its run's own ends the wait by itself)

        hub = self.request.app.state.hub
        with contextlib.suppress(_ChildAsked):
            await wait_until_settled(hub, task.session.session_id, run.run_id, after, seconds, "mcp", each)
        return await self.tasks.get(task.id)


_ASKED = EventType.INPUT_REQUIRED.encode()


class _ChildAsked(Exception):
    """A child run of the task asked a question: the call's wait is over."""


def _user(ctx: ServerRequestContext[Any, Any]) -> object:
    """The end user the call's `_meta` names (`user`), for the per-user cap (docs/mcp.md)."""
    meta = (ctx.params or {}).get("_meta")
    return meta.get("user") if isinstance(meta, dict) else None


def _progress_token(ctx: ServerRequestContext[Any, Any]) -> bool:
    meta = (ctx.params or {}).get("_meta")
    return isinstance(meta, dict) and meta.get("progressToken") is not None


def declares_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client declared the Tasks extension (its capabilities, or the request's
    `_meta`): a 2026-07-28 one (its tasks and its input requests are that revision's)."""
    capabilities = ctx.session.client_capabilities
    declared = bool(capabilities and capabilities.extensions and render.TASKS in capabilities.extensions)
    return declared and ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def can_elicit(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the client can be asked a question (an `elicitation/create` input request)."""
    capabilities = ctx.session.client_capabilities
    declared = bool(capabilities and capabilities.elicitation is not None)
    return declared and ctx.protocol_version in MODERN_PROTOCOL_VERSIONS  # an earlier wire has no input requests


def invalid(message: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=message)


def limited(exc: RateLimited) -> MCPError:
    """A request refused for one of its tenant's limits (its runs per minute, its open streams)."""
    return MCPError(RATE_LIMITED, str(exc), {"type": describe(exc)[1], "retryAfter": exc.retry_after})


class AgentTasks(Extension):
    """The Tasks extension, its tasks tokentail's runs, and the agents' tool calls."""

    identifier = render.TASKS

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskParams, self.get),
            MethodBinding("tasks/update", UpdateTaskParams, self.update),
            MethodBinding("tasks/cancel", TaskParams, self.cancel),
        ]

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        calls, task = await self._task(ctx, params)
        return render.detailed(task, calls.settings.session_ttl_seconds)

    async def update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> HandlerResult:
        """Answers the question the task waits on; responses for anything else are ignored (acked)."""
        calls, task = await self._task(ctx, params)
        try:
            await answer(calls.tasks, task, params.input_responses)
        except InvalidInput as exc:  # the answer does not match the question's schema
            raise invalid(str(exc)) from None
        return {}

    async def cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        calls, task = await self._task(ctx, params)
        await calls.tasks.cancel(task)  # idempotent: a task that ended is left as it is
        return {}

    async def _task(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> tuple[Calls, Task]:
        require_client_extension(ctx, render.TASKS)
        calls = Calls.of(ctx)
        # SEP-2243 (routing headers): a request about a task names it in `Mcp-Name` too.
        named = calls.request.headers.get("mcp-name")
        if named is not None and named.strip() != params.task_id:
            raise MCPError(code=HEADER_MISMATCH, message="the Mcp-Name header does not match params.taskId")
        try:
            return calls, await calls.task(params.task_id)
        except TaskNotFound:
            raise invalid(f"unknown task {params.task_id!r}") from None

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        calls = Calls.of(ctx)
        if params.name not in {info.name for info in await calls.agents.all()}:
            return await call_next(ctx)  # a tool of the server's own
        try:
            # A call waits for its run as a stream does, holding one of the tenant's stream slots, taken
            # first: then being refused for want of one (or of runs per minute) started nothing.
            async with calls.streams.reserve():
                return await call_agent(calls, ctx, params)
        except (InvalidInput, InputTooLarge, InputNotPending) as exc:
            raise invalid(str(exc)) from None
        except RateLimited as exc:
            raise limited(exc) from None


async def call_agent(calls: Calls, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> HandlerResult:
    info = await calls.agents.get(params.name)
    as_task = declares_tasks(ctx) and info.task_support != "forbidden"
    if params.request_state is not None:  # a retry with the answer to its run's question (unsealed by the SDK)
        try:
            task = await calls.task(params.request_state)
        except TaskNotFound:
            raise invalid("requestState names no task of yours") from None
        task = await answer(calls.tasks, task, params.input_responses)
    else:
        if info.task_support == "required":
            require_client_extension(ctx, render.TASKS)
        try:
            text = info.input_text(params.arguments or {})
        except InvalidInput as exc:  # a tool's input error, which a model can read and correct
            return {"resultType": "complete", "content": [{"type": "text", "text": str(exc)}], "isError": True}
        # Traced, the run joins the call's trace: the SDK's span for the call, current here, takes its
        # parent from `_meta`'s traceparent, and the run's record carries the context (writes.py).
        task = await _start(calls.tasks, info.name, text, _user(ctx))
    settings = calls.settings
    seconds = settings.mcp_task_after_seconds if as_task else settings.mcp_wait_seconds
    try:
        task = await calls.settle(task, seconds, ctx)
    except asyncio.CancelledError:
        # The client closed the call before its answer (MCP's cancel, at 2026-07-28), or the gateway
        # stops: nobody holds the run's id to read it, so it stops too.
        with anyio.CancelScope(shield=True):
            await calls.tasks.cancel(task)
        raise
    if render.status(task) == "input_required" and not (as_task or can_elicit(ctx)):
        await calls.tasks.cancel(task)  # nobody could answer its question
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="the agent asks a question, which this client cannot be asked: it needs the elicitation "
            "capability, at protocol version 2026-07-28",
            data={"requiredCapabilities": {"elicitation": {}}},
        )
    if (result := settled(calls, task, as_task, can_elicit(ctx))) is not None:
        return result
    if as_task:
        return render.created(task, settings.session_ttl_seconds)
    await calls.tasks.cancel(task)  # its caller gives up on it: nobody would read its answer
    raise MCPError(
        code=REQUEST_TIMEOUT,
        message=f"the agent did not answer within {seconds:g} s (TOKENTAIL_MCP_WAIT_SECONDS), and was cancelled; "
        f"a client that declares the {render.TASKS} extension gets a task to poll instead",
    )


_CANCELLING: set[asyncio.Task[Task]] = set()  # cancels of runs whose call was closed as they were queued


async def _start(tasks: RunTasks, agent: str, text: str, user: object) -> Task:
    """The call's run, queued; a call closed meanwhile has it cancelled once it is queued (nobody
    else holds its id), rather than leaving it going."""
    starting = asyncio.ensure_future(tasks.start(agent, text, user=user))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        starting.add_done_callback(lambda started: _cancel_started(tasks, started))
        raise


def _cancel_started(tasks: RunTasks, started: "asyncio.Future[Task]") -> None:
    if started.cancelled() or started.exception() is not None:
        return  # nothing was queued
    cancelling = asyncio.ensure_future(tasks.cancel(started.result()))
    _CANCELLING.add(cancelling)
    cancelling.add_done_callback(_CANCELLING.discard)


def settled(calls: Calls, task: Task, as_task: bool, elicit: bool) -> HandlerResult:
    """What a call answers for a run that ended or asks (its question in the call, if the client
    can be asked one, else a task it answers through `tasks/update`); None while it runs."""
    if render.status(task) == "input_required":
        if elicit:
            return render.input_required(render.questions(task), task.id)
        return render.created(task, calls.settings.session_ttl_seconds)
    if task.status == "completed" or task.agent_failed:
        return render.tool_result(task)
    if task.status == "failed":
        error = render.protocol_error(task)
        raise MCPError(code=error["code"], message=error["message"], data=error["data"])
    if task.status == "cancelled":
        if as_task:  # it was cancelled by the time the call answered: a task that says so
            return render.created(task, calls.settings.session_ttl_seconds)
        raise MCPError(code=render.INTERNAL_ERROR, message="the agent's run was cancelled", data={"type": "cancelled"})
    return None


async def answer(tasks: RunTasks, task: Task, responses: dict[str, Any] | None) -> Task:
    """Answer the task's questions (its run's, its child runs') from MCP input responses, those they
    hold answers to (the others stay open: a partial answer); the task after. Each answer is checked
    before any is given."""
    answers: dict[str, tuple[RunRecord, dict[str, Any]]] = {}
    for key, (run, question) in render.questions(task).items():
        try:
            given, value = render.answer_of(key, question, responses)
        except render.Declined:
            return await tasks.cancel(task)  # the person declined to answer: the task cannot go on
        if given:
            answers.setdefault(run.run_id, (run, {}))[1][question.input_id] = value
    for run, of_run in answers.values():
        for input_id, value in of_run.items():
            with contextlib.suppress(InputNotPending):  # answered meanwhile: as below
                check_answer(run, input_id, value)
    for run, of_run in answers.values():
        with contextlib.suppress(InputNotPending):  # answered meanwhile, through another gateway or the REST API
            await tasks.answer(Task(task.session, run), of_run)
    return await tasks.get(task.id)


class AgentTools:
    """A middleware of the SDK's server that lists the agents as tools after the server's own (an
    agent hides a tool of the same name: calls of that name go to the agent)."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/list" or not isinstance(result, dict) or result.get("nextCursor"):
            return result
        infos = await Calls.of(ctx).agents.all()
        names = {info.name for info in infos}
        own = [tool for tool in result.get("tools", []) if tool.get("name") not in names]
        return {**result, "tools": [*own, *(render.tool(info) for info in infos)]}
