"""a2a-sdk's `RequestHandler` over tokentail's runs: what each A2A method does, for one agent and the
calling tenant. The SDK's dispatchers (JSON-RPC, HTTP+JSON) parse the requests, call this, and write
the answers and streams; gateway/protocols/a2a/dispatch.py mounts them.

Nothing is kept in this process: a task is its run (`RunTasks`), its events are read from the run's
start and rendered (gateway/protocols/a2a/render.py), its push configs and the tenant's index of A2A tasks
are in Redis. So every method answers the same on any gateway, and a task outlives the gateway that
started it and the worker that runs it.
"""

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types.a2a_pb2 import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.types.a2a_pb2 import Task as A2ATask
from a2a.utils.errors import (
    A2A_ERROR_MAPPING,
    A2A_ERROR_REASONS,
    A2AError,
    ErrorMapping,
    ExtendedAgentCardNotConfiguredError,
    InternalError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

from tokentail.gateway.commands.tasks import RunTasks, Task
from tokentail.gateway.errors import describe
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.protocols.a2a.render import A2AEvents, Event
from tokentail.gateway.protocols.a2a.tasks import answered_question, message_answer, message_input
from tokentail.gateway.reading.feed import Batch, EventFeed, parse_last_event_id, start_position
from tokentail.gateway.reading.streams import Streams
from tokentail.shared.features.a2a_push import MAX_CONFIGS, PushConfig, PushConfigs
from tokentail.shared.features.agent_catalog import AgentInfo
from tokentail.shared.features.webhook_policy import WebhookPolicy
from tokentail.shared.store.client_indexes import TaskIndex
from tokentail.shared.vocabulary.errors import (
    InputNotPending,
    InputTooLarge,
    InvalidInput,
    InvalidLastEventId,
    QuestionNotFound,
    RateLimited,
    RunConflict,
    SessionExpired,
    SessionNotFound,
    TaskNotFound,
    TokentailError,
)
from tokentail.shared.vocabulary.response_ids import parse_task_id
from tokentail.shared.vocabulary.response_ids import task_id as task_id_of

SEND_WAIT_SECONDS = 300.0  # a blocking SendMessage answers with the task as it is then, if still working
CANCEL_WAIT_SECONDS = 10.0  # a cancel waits so long for the run's end before answering with the task as it is
DEFAULT_PAGE = 50
MAX_PAGE = 100

P = ParamSpec("P")
R = TypeVar("R")


class LimitError(A2AError):
    """A request refused for one of its tenant's limits (runs per minute, open streams: 429 on the
    REST API). A2A 1.0 has no error for it: the HTTP+JSON binding answers it as google.rpc answers an
    exhausted quota, 429 `RESOURCE_EXHAUSTED` (with `Retry-After`: gateway/protocols/a2a/dispatch.py), JSON-RPC
    as an internal error (-32603, a2a-sdk's code for an error it has none for); both say which limit
    and when to retry in its `data` (`ErrorInfo.metadata`): `{"type", "retryAfter"}`, as MCP's
    -32029 says it."""

    message = "a limit of this tenant is reached"


# a2a-sdk's dispatchers map an error to its HTTP status and google.rpc reason by these tables.
A2A_ERROR_MAPPING[LimitError] = ErrorMapping(429, "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED")
A2A_ERROR_REASONS[LimitError] = A2A_ERROR_MAPPING[LimitError].reason


def _a2a_error(exc: TokentailError) -> A2AError:
    if isinstance(exc, TaskNotFound | SessionNotFound):
        return TaskNotFoundError(str(exc))
    if isinstance(exc, InvalidInput | InputTooLarge | QuestionNotFound):
        return InvalidParamsError(str(exc))
    if isinstance(exc, RunConflict):  # a message in a context whose task is still going
        return UnsupportedOperationError(f"{exc}: a context takes a new task once its last one has ended")
    if isinstance(exc, InputNotPending):  # answered meanwhile, elsewhere
        return UnsupportedOperationError(str(exc))
    if isinstance(exc, RateLimited):
        limit = {"type": describe(exc)[1], "retryAfter": exc.retry_after}
        return LimitError(f"{exc}; retry after {exc.retry_after} s", data=limit)
    return InternalError(str(exc))


def _translated(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """tokentail's errors as A2A's (the dispatchers answer anything else as an internal error)."""

    @wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except TokentailError as exc:
            raise _a2a_error(exc) from exc

    return translated


@contextlib.asynccontextmanager
async def _translating() -> AsyncIterator[None]:
    """As `_translated`, around a stream's work."""
    try:
        yield
    except TokentailError as exc:
        raise _a2a_error(exc) from exc


class TaskHandler(RequestHandler):
    def __init__(
        self,
        agent: AgentInfo,
        tasks: RunTasks,
        hub: StreamHub,
        streams: Streams,
        pushes: PushConfigs,
        index: TaskIndex,
    ) -> None:
        self.agent = agent
        self.tasks = tasks
        self.hub = hub
        self.streams = streams
        self.pushes = pushes
        self.index = index

    # -- messages ---------------------------------------------------------------------------------

    @_translated
    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> A2ATask | Message:
        if params.configuration.return_immediately:
            task = await self._send(params)
        else:
            async with self.streams.reserve():  # it waits as a stream does: a slot first, a 429 started nothing
                task = await self.tasks.settle(await self._send(params), self.hub, SEND_WAIT_SECONDS, "a2a")
        return await self._task(task, _history_length(params.configuration))

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        async with _translating(), self.streams.reserve():  # a slot first: a 429 started nothing
            task = await self._send(params)
            async for event in self._follow(task, None):
                yield event

    async def _send(self, params: SendMessageRequest) -> Task:
        """The task a message starts, or the one whose question it answers. Everything that may
        refuse it (its input, its answer, a push config given with it) is checked before its run is
        queued or answered, so a refused message starts and changes nothing."""
        message, configuration = params.message, params.configuration
        pushed = configuration.HasField("task_push_notification_config")
        push = _push(self.tasks.webhooks.policy, configuration.task_push_notification_config) if pushed else None
        if message.task_id:
            task = await self._find(message.task_id)
            if message.context_id and message.context_id != task.session.session_id:
                raise InvalidParamsError(
                    f"message.contextId: task {task.id!r} is of context {task.session.session_id!r}"
                )
            if not task.questions:
                raise UnsupportedOperationError(
                    f"task {task.id!r} is {_status(task)}: a message on a task answers its question; "
                    "start a new task in its context (contextId) instead"
                )
            answers = {answered_question(task, message): message_answer(message)}
            if push is not None:
                await self._room_for(task, push)
            task = await self.tasks.answer(task, answers)
            if push is not None:
                await self._keep_push(task, push)
            return task
        text = message_input(self.agent, message)
        try:
            user = MessageToDict(message.metadata).get("user")  # checked as any request's (RunTasks.start)
            context_id = message.context_id or None
            task = await self.tasks.start(self.agent.name, text, context_id, task_push=push is not None, user=user)
        except (SessionNotFound, SessionExpired):
            raise InvalidParamsError(f"message.contextId: no context {message.context_id!r}") from None
        if push is not None:  # its session marked as its run was queued (RunTasks.start)
            await self.pushes.put(task.session.session_id, task.run.run_id, push)
        await self.index.add(self.tasks.caller.tenant, self.agent.name, task.id, task.created_at)
        return task

    # -- tasks ------------------------------------------------------------------------------------

    @_translated
    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> A2ATask | None:
        task = await self._find(params.id)
        return await self._task(task, params.history_length if params.HasField("history_length") else None)

    @_translated
    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        size = params.page_size if params.HasField("page_size") else DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise InvalidParamsError(f"pageSize: from 1 to {MAX_PAGE}")
        found = await (self._of_context(params.context_id) if params.context_id else self._indexed())
        if params.status:
            found = [task for task in found if _state(task) == params.status]
        if params.HasField("status_timestamp_after"):
            after = params.status_timestamp_after.ToNanoseconds() / 1e9
            found = [task for task in found if task.updated_at > after]
        found.sort(key=lambda task: (-task.updated_at, task.id))
        total = len(found)
        if params.page_token:
            cursor = _cursor(params.page_token)
            found = [task for task in found if (-task.updated_at, task.id) > cursor]
        page, rest = found[:size], found[size:]
        history = params.history_length if params.HasField("history_length") else None
        listed = [_listed(task, history, params.include_artifacts) for task in page]
        token = _token(page[-1]) if rest else ""
        return ListTasksResponse(tasks=listed, next_page_token=token, page_size=size, total_size=total)

    async def _of_context(self, context_id: str) -> list[Task]:
        try:
            tasks = await self.tasks.of_session(context_id)
        except (SessionNotFound, SessionExpired):
            return []
        return [task for task in tasks if task.agent == self.agent.name or task.run.parent_run_id is not None]

    async def _indexed(self) -> list[Task]:
        """The tenant's A2A tasks with this agent, the index's entries whose session is gone dropped."""
        tenant = self.tasks.caller.tenant
        ids = await self.index.ids(tenant, self.agent.name)
        # Each session read once, however many of its tasks are listed (a context of many turns).
        sessions = {parsed[0] for task_id in ids if (parsed := parse_task_id(task_id)) is not None}
        read = await asyncio.gather(*(self._of_context(session_id) for session_id in sessions))
        found = {task.id: task for tasks in read for task in tasks}
        await self.index.drop(tenant, self.agent.name, [task_id for task_id in ids if task_id not in found])
        return [found[task_id] for task_id in ids if task_id in found]

    @_translated
    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> A2ATask | None:
        task = await self._find(params.id)
        if task.status in ("completed", "failed"):
            raise TaskNotCancelableError(f"task {task.id!r} is {task.status}")
        task = await self.tasks.cancel(task)
        task = await self.tasks.settle(task, self.hub, CANCEL_WAIT_SECONDS, "a2a")
        return await self._task(task)

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        """The Task, then its events to its end. With the resume extension's `Last-Event-ID: N`: the
        Task as the client had it at N, then every event after N, also of a task that has ended since
        (a stream cut before its end gets the rest); without it, a task that has ended is the spec's
        error."""
        after = _last_event_id(context)
        async with _translating(), self.streams.reserve():
            task = await self._find(params.id)
            if task.terminal and after is None:
                raise UnsupportedOperationError(f"task {task.id!r} is {task.status}: read it with GetTask")
            async for event in self._follow(task, after):
                yield event

    # -- push notification configs ----------------------------------------------------------------

    @_translated
    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        task = await self._find(params.task_id)
        push = _push(self.tasks.webhooks.policy, params)
        await self._room_for(task, push)
        await self._keep_push(task, push)
        return _push_config(task, push)

    async def _room_for(self, task: Task, push: PushConfig) -> None:
        """InvalidParams if the task has all the configs it may, none of them `push`'s id."""
        existing = await self.pushes.of_run(task.session.session_id, task.run.run_id)
        if push.id not in {config.id for config in existing} and len(existing) >= MAX_CONFIGS:
            raise InvalidParamsError(f"task {task.id!r} has {MAX_CONFIGS} push configs already")

    async def _keep_push(self, task: Task, push: PushConfig) -> None:
        session_id = task.session.session_id
        # Marked first: an end that comes after the config is stored is then kept for it.
        await self.tasks.runs.watch_task_push(session_id)
        await self.pushes.put(session_id, task.run.run_id, push)

    @_translated
    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        task = await self._find(params.task_id)
        config = await self.pushes.get(task.session.session_id, task.run.run_id, params.id)
        if config is None:
            raise TaskNotFoundError(f"task {task.id!r} has no push config {params.id!r}")
        return _push_config(task, config)

    @_translated
    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        task = await self._find(params.task_id)
        configs = await self.pushes.of_run(task.session.session_id, task.run.run_id)
        return ListTaskPushNotificationConfigsResponse(configs=[_push_config(task, config) for config in configs])

    @_translated
    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        task = await self._find(params.task_id)
        await self.pushes.delete(task.session.session_id, task.run.run_id, params.id)  # none: done already

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError("this agent has no extended card: its card is public")

    # -- reading a task ---------------------------------------------------------------------------

    async def _find(self, task_id: str) -> Task:
        """The caller's task of this agent: a run of it, or a child run one of its runs started
        (docs/subagents.md: any agent's, in the same context)."""
        task = await self.tasks.get(task_id)
        if _root(task).agent != self.agent.name:
            raise TaskNotFound(task_id)  # another agent's, as a missing one
        return task

    def _renderer(self, task: Task, after: int | None) -> A2AEvents:
        run, session_id = task.run, task.session.session_id
        parent = task_id_of(session_id, run.parent_run_id) if run.parent_run_id is not None else None
        # A run that ended is read to its end: past a question it was cancelled at (as a child is, with its parent).
        answered = [question.input_id for question in run.asked] if task.terminal else list(run.answers)
        return A2AEvents(task.id, session_id, run.run_id, after, tuple(answered), parent)

    async def _task(self, task: Task, history_length: int | None = None) -> A2ATask:
        """The Task as its run's stored events make it (the same as a stream's, generation included)."""
        events = self._renderer(task, None)
        session_id, after = task.session.session_id, (task.run.queued_seq or 1) - 1
        store = self.tasks.store
        while not events.finished and (stored := await store.read(session_id, after, 1000)):
            events.events(Batch([Chunk(stored)]))
            after = stored[-1].seq
        return events.task(history_length)

    async def _follow(self, task: Task, after: int | None) -> AsyncIterator[Event]:
        """The task's events from its run's start (any gateway), rendered, to its end or its question."""
        events = self._renderer(task, after)
        session_id = task.session.session_id
        start = await start_position(self.tasks.store, session_id, (task.run.queued_seq or 1) - 1)
        batch = self.tasks.settings.sse_batch
        feed = EventFeed(self.hub, session_id, start, batch, until_idle=True, transport="a2a")
        gap = start.gap  # the run's start trimmed away (or expired): told with the first batch
        async with contextlib.aclosing(feed.__aiter__()) as batches:
            async for got in batches:
                if gap is not None and got.gap is None:
                    got = Batch(got.chunks, gap, got.snapshot)
                gap = None
                for event in events.events(got):
                    yield event
                if events.finished:
                    return
        if not events.opened:  # the session's stream ended before the task's point: the Task as it is
            yield events.task()


def _last_event_id(context: ServerCallContext) -> int | None:
    """The resume extension's `Last-Event-ID` (a generation), read as every route reads an event id;
    None without one."""
    raw = context.state.get("headers", {}).get("last-event-id")
    if raw is None:
        return None
    try:
        return parse_last_event_id(raw)
    except InvalidLastEventId as exc:
        raise InvalidParamsError(f"{exc} (the resume extension's: a generation)") from None


def _history_length(configuration: Any) -> int | None:
    return configuration.history_length if configuration.HasField("history_length") else None


_STATES = {
    "submitted": TaskState.TASK_STATE_SUBMITTED,
    "working": TaskState.TASK_STATE_WORKING,
    "input_required": TaskState.TASK_STATE_INPUT_REQUIRED,
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "cancelled": TaskState.TASK_STATE_CANCELED,
}


def _status(task: Task) -> str:
    """The task's status, a run that waits for its children (not for an answer) working."""
    return "working" if task.status == "input_required" and not task.questions else task.status


def _state(task: Task) -> TaskState:
    return _STATES[_status(task)]


def _root(task: Task) -> Task:
    """The session's own run a task's run is (a child run's ancestor: its task is of that run's agent)."""
    runs = {run.run_id: run for run in task.session.runs}
    run = task.run
    while run.parent_run_id is not None and run.parent_run_id in runs:
        run = runs[run.parent_run_id]
    return Task(task.session, run)


def _listed(task: Task, history_length: int | None, artifacts: bool) -> A2ATask:
    """A task as ListTasks shows it: from its run's record (its answer: the run's output), not its
    events, so a page costs a record read per task."""
    listed = A2ATask(id=task.id, context_id=task.session.session_id)
    listed.status.state = _state(task)
    listed.status.timestamp.FromNanoseconds(int(task.updated_at * 1e9))
    if history_length != 0:
        said = Message(message_id=f"in-{task.run.run_id}", context_id=task.session.session_id, task_id=task.id)
        said.role = Role.ROLE_USER
        if (parent := task.run.parent_run_id) is not None:  # a child's task: its first message names its parent's
            said.reference_task_ids.append(task_id_of(task.session.session_id, parent))
        said.parts.append(Part(text=task.run.input))
        listed.history.append(said)
    if artifacts and task.output:
        listed.artifacts.append(Artifact(artifact_id="answer", name="answer", parts=[Part(text=task.output)]))
    return listed


def _token(task: Task) -> str:
    return base64.urlsafe_b64encode(json.dumps([task.updated_at, task.id]).encode()).decode()


def _cursor(token: str) -> tuple[float, str]:
    try:
        updated_at, task_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return -float(updated_at), str(task_id)
    except (ValueError, TypeError) as exc:
        raise InvalidParamsError("pageToken: not a token this server gave") from exc


def _push(policy: WebhookPolicy, params: TaskPushNotificationConfig) -> PushConfig:
    """The push config asked for, checked: push notifications on, its URL under the operator's
    allowlist, its token and authentication sendable as headers (InvalidParams otherwise)."""
    if not policy.enabled:  # as the agent card says (capabilities.pushNotifications: false)
        raise PushNotificationNotSupportedError(
            "push notifications are off on this deployment (TOKENTAIL_WEBHOOK_ALLOWED_URLS is empty)"
        )
    auth = params.authentication
    config = PushConfig(
        id=params.id or secrets.token_urlsafe(9),
        url=policy.check(params.url),
        token=params.token,
        scheme=auth.scheme,
        credentials=auth.credentials,
    )
    return config.checked()


def _push_config(task: Task, config: PushConfig) -> TaskPushNotificationConfig:
    made = TaskPushNotificationConfig(id=config.id, task_id=task.id, url=config.url, token=config.token)
    if config.scheme:
        made.authentication.scheme = config.scheme
        made.authentication.credentials = config.credentials
    return made
