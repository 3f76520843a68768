"""Who calls LangGraph's routes: tokentail's callers (an API key, or a chat token for the thread's chat),
as `Authorization: Bearer`, or as LangGraph's SDKs send a key, `x-api-key`; and the path ids that are
not the words of LangGraph's routes.
"""

from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.requests import HTTPConnection

from tokentail.gateway.access.auth import Caller
from tokentail.gateway.commands.turns import ChatTurns
from tokentail.gateway.deps import Bearer, QueryToken, run_commands, streams_for
from tokentail.gateway.reading.streams import Streams


class _Named(StringConvertor):
    """A path's id that is not one of the words LangGraph's routes put in its place: `GET
    /threads/{thread_id}` is not `POST /threads/search`, nor `GET .../runs/{run_id}` `POST
    .../runs/wait` (so a 405 there names only POST)."""

    regex = "(?!(?:search|count|stream|wait)$)[^/]+"


register_url_convertor("lg_id", _Named())  # `{thread_id:lg_id}`, `{run_id:lg_id}`, `{assistant_id:lg_id}`

# The LangGraph SDKs send their key as `x-api-key` (from LANGGRAPH_API_KEY or LANGSMITH_API_KEY): taken as
# `Authorization: Bearer` is, which wins when both are sent.
api_key_header = APIKeyHeader(
    name="x-api-key", auto_error=False, description="an API key, or a chat token, as LangGraph's SDKs send it"
)


async def langgraph_caller(
    connection: HTTPConnection,
    bearer: Bearer,
    token: QueryToken,
    x_api_key: Annotated[str | None, Depends(api_key_header)] = None,
) -> Caller:
    """The caller, if it may chat (an API key, or a chat token for the thread's chat)."""
    caller: Caller = connection.app.state.auth.authenticate(bearer.credentials if bearer else x_api_key, token)
    caller.require_chat()
    return caller


async def _turns(connection: HTTPConnection, caller: Annotated[Caller, Depends(langgraph_caller)]) -> ChatTurns:
    return run_commands(ChatTurns, connection, caller)


async def _streams(connection: HTTPConnection, caller: Annotated[Caller, Depends(langgraph_caller)]) -> Streams:
    return streams_for(connection, caller)


ChatTurnsDep = Annotated[ChatTurns, Depends(_turns)]
StreamsDep = Annotated[Streams, Depends(_streams)]
