"""MCP at `/mcp`, registered as the gateway starts and answered by the `mcp` SDK's server
(gateway/protocols/mcp/server.py), which the first call builds. Outside the OpenAPI schema: it is
JSON-RPC, documented in docs/mcp.md.

Importing the SDK (its ~490 pydantic models) is a quarter of a gateway's start: a gateway that is
never called at `/mcp` does not pay it, and the first call waits for it (the other streams go on
meanwhile: the import runs in a thread). This module imports nothing of the SDK.
"""

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tokentail.gateway.errors import error_response
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.catalog import unresolved_import_path

if TYPE_CHECKING:
    from tokentail.gateway.protocols.mcp.server import McpApp

logger = logging.getLogger(__name__)


class OnDemand:
    """One gateway's MCP server, built on the first call, once however many calls come together, and
    held by a task of its own: the session manager's lifetime is an anyio task group, entered and left
    in the same task, which a request's task is not. A build that failed is tried again by the next call."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._server: asyncio.Future[McpApp | None] | None = None  # None: not built; its result None: failed
        self._holder: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def server(self) -> "McpApp | None":
        """The running server, built first if need be; None if it could not be (the log says why)."""
        if self._stopping.is_set():
            return None
        if self._server is None:
            self._server = asyncio.get_running_loop().create_future()
            # A context of its own: the server's tasks are not the first caller's (its trace, its request).
            self._holder = asyncio.create_task(self._hold(self._server), context=contextvars.Context())
        # Shielded: a caller that goes away does not cancel the build the others wait for.
        return await asyncio.shield(self._server)

    async def _hold(self, server: "asyncio.Future[McpApp | None]") -> None:
        try:
            app = await asyncio.to_thread(_built, self._settings)
            async with app.running():
                server.set_result(app)
                await self._stopping.wait()
        except Exception:
            logger.exception("MCP's server failed (the next call to /mcp builds it again)")
        finally:
            if not server.done():
                server.set_result(None)
            if self._server is server:
                self._server = None  # a server that is not running is built again by the next call

    async def aclose(self) -> None:
        """Stops the server, if built: leaves the session manager's lifetime in the task that entered it."""
        self._stopping.set()
        if self._holder is not None:
            await self._holder


def _built(settings: Settings) -> "McpApp":
    from tokentail.gateway.protocols.mcp import server  # the SDK: imported on the first call only

    return server.McpApp(server.build_server(settings))


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # Your server's module is found now, so a gateway named a wrong one fails to start; its function is
    # looked up as the first call builds the server (importing your module may import the SDK).
    if settings.mcp_server is not None and (problem := unresolved_import_path(settings.mcp_server)) is not None:
        raise ValueError(f"TOKENTAIL_MCP_SERVER: {problem}")
    app.state.mcp = on_demand = OnDemand(settings)
    try:
        yield
    finally:
        await on_demand.aclose()


class Endpoint:
    """`/mcp`: the server, built on the first call, answers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        on_demand: OnDemand = scope["app"].state.mcp
        server = await on_demand.server()
        if server is None:
            message = "MCP's server is not running on this gateway (its log says why); the next call tries again"
            await error_response(503, "mcp_unavailable", message)(scope, receive, send)
            return
        await server(scope, receive, send)


router = APIRouter(lifespan=serving)
router.routes.append(Route("/mcp", endpoint=Endpoint(), methods=["GET", "POST", "DELETE"]))
