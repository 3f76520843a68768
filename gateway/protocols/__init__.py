"""The protocols of others that the gateway speaks, one package each over the shared core (access/,
live/, reducer/, reading/ with the renderer base, commands/, deps, schemas, errors, socket_tasks):

    ai_sdk     the Vercel AI SDK's UI message stream (useChat), over HTTP and its WebSocketChatTransport
    ag_ui      AG-UI (CopilotKit, @ag-ui/client)
    responses  OpenAI's Responses API, over HTTP and its WebSocket mode
    mcp        MCP's streamable HTTP, an agent a tool and its run a task (the `mcp` extra)
    a2a        A2A 1.0: agent cards, JSON-RPC and HTTP+JSON, push notifications
    langgraph  LangGraph's Agent Server API (langgraph-sdk, @langchain/langgraph-sdk), at /langgraph
    acp        the Agent Client Protocol (code editors), over Streamable HTTP and a WebSocket, at /acp

Each holds its renderer (`render`), its conversations and request handlers, its commands and its
routes. A protocol imports the core, never another protocol (tests/unit/project/test_layout.py). The app
includes every protocol's router from `routers()`, one a package (its routes.py, which includes the
package's other route modules); adding a protocol is a package and its router here.
"""

import importlib.util

from fastapi import APIRouter, Request, Response
from starlette.routing import Route

from tokentail.gateway.errors import error_response
from tokentail.gateway.protocols.a2a import routes as a2a_routes
from tokentail.gateway.protocols.acp import routes as acp_routes
from tokentail.gateway.protocols.ag_ui import routes as ag_ui_routes
from tokentail.gateway.protocols.ai_sdk import routes as ai_sdk_routes
from tokentail.gateway.protocols.langgraph import routes as langgraph_routes
from tokentail.gateway.protocols.mcp import routes as mcp_routes
from tokentail.gateway.protocols.responses import routes as responses_routes


def routers() -> list[APIRouter]:
    """Each protocol's router, from its package's routes.py, in the order they are included; MCP's last,
    with its extra or not."""
    return [
        ai_sdk_routes.router,
        ag_ui_routes.router,
        responses_routes.router,
        a2a_routes.router,
        langgraph_routes.router,
        acp_routes.router,
        _mcp_router(),
    ]


def _mcp_router() -> APIRouter:
    """MCP's endpoint, with the `mcp` extra installed (found, not imported: the first call imports it);
    without it, `/mcp` says how to get it."""
    if importlib.util.find_spec("mcp") is not None:
        return mcp_routes.router

    async def not_installed(request: Request) -> Response:
        message = "MCP is not installed on this gateway: pip install 'tokentail[mcp]' (docs/mcp.md)"
        return error_response(501, "not_installed", message)

    router = APIRouter()
    router.routes.append(Route("/mcp", not_installed, methods=["GET", "POST", "DELETE"]))
    return router
