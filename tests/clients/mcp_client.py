"""The `mcp` Python client (2.3) with the Tasks extension it does not ship yet (python-sdk#3226):
a `ClientExtension` that declares `io.modelcontextprotocol/tasks`, claims the `task` result of a
tool call and finishes it by polling `tasks/get`; and the three task requests, sent through the
client's session (which stamps each request's `_meta` and its `Mcp-Name` header)."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, cast

import httpx2
from mcp import Client
from mcp.client import Transport
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")


class TaskParams(RequestParams):
    model_config = ConfigDict(extra="allow")
    task_id: str


class AnyResult(Result):
    """A result as it came (a `DetailedTask`, an acknowledgement)."""

    model_config = ConfigDict(extra="allow")


async def _send(session: ClientSession, request: Request[TaskParams, Any]) -> dict[str, Any]:
    result = await session.send_request(request, AnyResult)
    return result.model_dump(by_alias=True, exclude_none=True)


class CreatedTask(Result):
    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str


class GetTask(Request[TaskParams, Literal["tasks/get"]]):
    name_param = "taskId"


class UpdateTask(Request[TaskParams, Literal["tasks/update"]]):
    name_param = "taskId"


class CancelTask(Request[TaskParams, Literal["tasks/cancel"]]):
    name_param = "taskId"


async def get_task(session: ClientSession, task_id: str) -> dict[str, Any]:
    return await _send(session, GetTask(method="tasks/get", params=TaskParams(task_id=task_id)))


async def update_task(session: ClientSession, task_id: str, input_responses: dict[str, Any]) -> dict[str, Any]:
    params = TaskParams.model_validate({"taskId": task_id, "inputResponses": input_responses})
    return await _send(session, UpdateTask(method="tasks/update", params=params))


async def cancel_task(session: ClientSession, task_id: str) -> dict[str, Any]:
    return await _send(session, CancelTask(method="tasks/cancel", params=TaskParams(task_id=task_id)))


async def until_status(session: ClientSession, task_id: str, *statuses: str, within: float = 30) -> dict[str, Any]:
    """Polls tasks/get until the task has one of `statuses` (or ends)."""
    async with asyncio.timeout(within):
        while True:
            task = await get_task(session, task_id)
            if task["status"] in statuses or task["status"] in TERMINAL:
                return task
            await asyncio.sleep(0.1)


class Tasks(ClientExtension):
    """Declares the Tasks extension; a tool call that became a task is polled to its end."""

    identifier = TASKS

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self.finish)]

    async def finish(self, created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
        task = await until_status(ctx.session, created.task_id, *TERMINAL)
        if task["status"] == "completed":
            return CallToolResult.model_validate(task["result"])
        raise RuntimeError(f"task {created.task_id} {task['status']}: {task.get('error')}")


@asynccontextmanager
async def connect(url: str, api_key: str | None = None, *, tasks: bool = True, **options: Any) -> AsyncIterator[Client]:
    """A client of the gateway's `/mcp`, with the API key, declaring the Tasks extension or not."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        transport = cast(Transport, streamable_http_client(f"{url}/mcp", http_client=http))
        async with Client(transport, extensions=[Tasks()] if tasks else [], **options) as client:
            yield client
