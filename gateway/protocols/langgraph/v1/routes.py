"""LangGraph's Agent Server API, v1 routes, as `langgraph-sdk` 0.4 and `@langchain/langgraph-sdk` send
them, under `/langgraph` (`get_client(url="http://host:port/langgraph")`). docs/langgraph.md lists
each, and what is not served.

Here: assistants and threads; the runs' routes are run_routes.py's. Every route takes the caller as
tokentail's others do (access.py); errors are tokentail's JSON (`{"error": {"type", "message", ...}}`,
whose message both SDKs read).
"""

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict

from tokentail.gateway.commands.deletion import delete_session
from tokentail.gateway.deps import SettingsDep
from tokentail.gateway.protocols.langgraph import assistants, checkpoints, threads
from tokentail.gateway.protocols.langgraph.access import ChatTurnsDep
from tokentail.gateway.protocols.langgraph.v1 import run_routes
from tokentail.gateway.schemas import ERROR_RESPONSES
from tokentail.shared.vocabulary.errors import Forbidden, SessionNotFound

router = APIRouter(prefix="/langgraph", tags=["langgraph"])


# -- assistants -----------------------------------------------------------------------------------


class AssistantSearch(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    graph_id: str | None = None
    name: str | None = None
    limit: int = 10
    offset: int = 0


async def _assistant_list(settings: SettingsDep, body: AssistantSearch) -> list[dict[str, Any]]:
    names = assistants.agent_names(settings)
    names = [name for name in names if body.graph_id in (None, name) and body.name in (None, name)]
    return [assistants.assistant_json(name) for name in names[body.offset : body.offset + body.limit]]


@router.post("/assistants/search", responses=ERROR_RESPONSES)
async def search_assistants(settings: SettingsDep, body: AssistantSearch) -> list[dict[str, Any]]:
    """The deployment's agents, as assistants (filtered by `graph_id` or `name`)."""
    return await _assistant_list(settings, body)


@router.post("/assistants/count", responses=ERROR_RESPONSES)
async def count_assistants(settings: SettingsDep, body: AssistantSearch) -> int:
    return len(await _assistant_list(settings, body.model_copy(update={"limit": 1_000_000, "offset": 0})))


@router.get("/assistants/{assistant_id:lg_id}", responses=ERROR_RESPONSES)
async def get_assistant(assistant_id: str, settings: SettingsDep) -> dict[str, Any]:
    return assistants.assistant_json(assistants.agent_of(assistant_id, settings))


@router.get("/assistants/{assistant_id}/graph", responses=ERROR_RESPONSES)
async def get_graph(assistant_id: str, settings: SettingsDep) -> dict[str, list[dict[str, Any]]]:
    return assistants.graph_json(assistants.agent_of(assistant_id, settings))


@router.get("/assistants/{assistant_id}/schemas", responses=ERROR_RESPONSES)
async def get_schemas(assistant_id: str, settings: SettingsDep) -> dict[str, Any]:
    return assistants.schemas_json(assistants.agent_of(assistant_id, settings))


@router.get("/assistants/{assistant_id}/subgraphs", responses=ERROR_RESPONSES)
async def get_subgraphs(assistant_id: str, settings: SettingsDep) -> dict[str, Any]:
    assistants.agent_of(assistant_id, settings)
    return {}  # an agent's children are other agents, started as it runs: no subgraph is known before


# -- threads --------------------------------------------------------------------------------------


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadSearch(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    ids: list[str] | None = None
    limit: int = 10
    offset: int = 0


class HistoryQuery(BaseModel):
    """`POST /threads/{tid}/history`, as `get_history` sends it (`checkpoint`, a subgraph's: the root's)."""

    model_config = ConfigDict(extra="allow", strict=True)

    limit: int = 10
    before: str | dict[str, Any] | None = None  # a checkpoint (or its id): the states older than it
    metadata: dict[str, Any] | None = None  # the states whose metadata has these pairs


@router.post("/threads", responses=ERROR_RESPONSES)
async def create_thread(turns: ChatTurnsDep, body: ThreadCreate | None = None) -> dict[str, Any]:
    """A thread: a session with no run yet (`thread_id`: the client's, else a UUID made here)."""
    body = body or ThreadCreate()
    thread_id = body.thread_id or threads.new_thread_id()
    session_id = await threads.create_thread(turns, thread_id, body.metadata or {}, body.if_exists)
    session, events = await threads.read_thread(turns.store, session_id)
    return threads.thread_json(thread_id, session, events)


@router.get("/threads/{thread_id:lg_id}", responses=ERROR_RESPONSES)
async def get_thread(thread_id: str, turns: ChatTurnsDep) -> dict[str, Any]:
    session_id, _ = await threads.existing_thread(turns, thread_id)
    session, events = await threads.read_thread(turns.store, session_id)
    return threads.thread_json(thread_id, session, events)


@router.post("/threads/search", responses=ERROR_RESPONSES)
async def search_threads(turns: ChatTurnsDep, body: ThreadSearch | None = None) -> list[dict[str, Any]]:
    """The threads named by `ids` that exist (tokentail keeps no index of a tenant's threads: a
    search without `ids` finds none)."""
    body = body or ThreadSearch()
    found = []
    for thread_id in (body.ids or [])[body.offset : body.offset + body.limit]:
        try:
            session_id, _ = await threads.existing_thread(turns, thread_id)
        except (SessionNotFound, Forbidden):  # never made, another tenant's, not a chat token's: not listed
            continue
        session, events = await threads.read_thread(turns.store, session_id)
        found.append(threads.thread_json(thread_id, session, events))
    return found


@router.delete("/threads/{thread_id:lg_id}", status_code=204, responses=ERROR_RESPONSES)
async def delete_thread(thread_id: str, turns: ChatTurnsDep) -> Response:
    _, session = await threads.existing_thread(turns, thread_id)
    await delete_session(turns.runs, turns.store, session)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/state", responses=ERROR_RESPONSES)
async def get_state(thread_id: str, turns: ChatTurnsDep) -> dict[str, Any]:
    """The thread's state: `values.messages`, and while its run waits for answers, that run as the
    task with its interrupts."""
    session_id, _ = await threads.existing_thread(turns, thread_id)
    session, events = await threads.read_thread(turns.store, session_id)
    return threads.state_json(thread_id, session, events)


@router.post("/threads/{thread_id}/history", responses=ERROR_RESPONSES)
async def get_history(thread_id: str, turns: ChatTurnsDep, body: HistoryQuery | None = None) -> list[dict[str, Any]]:
    """The thread's states at its checkpoints, of every branch, newest first (checkpoints.py)."""
    await threads.existing_thread(turns, thread_id)
    query = body or HistoryQuery()
    return checkpoints.page(
        await checkpoints.thread_history(turns, thread_id), query.limit, query.before, query.metadata
    )


# The runs' routes (run_routes.py), under the same prefix.
router.include_router(run_routes.router)
