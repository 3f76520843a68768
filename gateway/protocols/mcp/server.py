"""The `mcp` SDK's server that answers `/mcp` (Streamable HTTP, stateless: revision 2026-07-28, and the
handshake revisions before it), with tokentail's agents and the Tasks extension in it
(gateway/protocols/mcp/tasks.py). Built on the first call (gateway/protocols/mcp/routes.py): importing
this module imports the SDK.

The server is yours when `TOKENTAIL_MCP_SERVER` names a function that builds one from tokentail's
extensions (`def server(extensions): return MCPServer("name", extensions=extensions)`): its
tools, resources, prompts and completions are served beside the agents. Otherwise tokentail's own
has the agents alone.

Auth is the REST API's: an API key (`Authorization: Bearer`), whose tenant's tasks alone the caller
sees. With auth off, a gateway on a loopback address takes only requests whose `Host` and `Origin`
are loopback ones, so a web page cannot reach it through DNS rebinding.
"""

import importlib
import ipaddress
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from importlib.metadata import version
from typing import Any, cast

from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.extension import Extension
from mcp.server.mcpserver import MCPServer, RequestStateSecurity
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from tokentail.gateway.errors import describe, error_response
from tokentail.gateway.protocols.mcp.listen import TaskNotifications
from tokentail.gateway.protocols.mcp.tasks import AgentTasks, AgentTools
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.errors import TokentailError

LOOPBACK = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"],
    allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
)
UNGUARDED = TransportSecuritySettings(enable_dns_rebinding_protection=False)  # checked here, by the endpoint
REQUEST_STATE_TTL = 3600.0  # how long a client may take to retry a call with its question's answer


def build_server(settings: Settings) -> MCPServer[Any]:
    """The deployment's MCP server: yours (`TOKENTAIL_MCP_SERVER`), or tokentail's, with the agents."""
    extensions: Sequence[Extension] = [AgentTasks()]
    if settings.mcp_server is not None:
        module, _, name = settings.mcp_server.partition(":")
        factory = cast(Callable[[list[Extension]], MCPServer[Any]], getattr(importlib.import_module(module), name))
        server = factory(list(extensions))
    else:
        # A shared key seals `requestState` (the question a retry answers), so any gateway takes the retry.
        secret = settings.secret.get_secret_value() if settings.secret is not None else None
        security = RequestStateSecurity(keys=[secret], ttl=REQUEST_STATE_TTL) if secret else None
        # The agents' list changes only when workers start with other agents.
        hints: dict[CacheableMethod, CacheHint] = {"tools/list": CacheHint(ttl_ms=5000, scope="public")}
        server = MCPServer(
            "tokentail",
            version=version("tokentail"),  # its `serverInfo` (the SDK's default is "")
            extensions=extensions,
            request_state_security=security,
            cache_hints=hints,
        )
    server.middleware.extend([AgentTools(), TaskNotifications()])
    # Builds the server's session manager (its Starlette app is not used: the endpoint below serves it).
    server.streamable_http_app(stateless_http=True, transport_security=UNGUARDED)
    return server


class McpApp:
    """The server behind tokentail's auth, as an ASGI app: who calls, then the SDK's transport."""

    def __init__(self, server: MCPServer[Any]) -> None:
        self.server = server

    def running(self) -> AbstractAsyncContextManager[None]:
        """The session manager's lifetime (an anyio task group: entered and left in the same task)."""
        return self.server.session_manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _serve(self.server, _trimmed(scope), receive, send)


def _trimmed(scope: Scope) -> Scope:
    """`scope` with its header values as HTTP reads a field value: without the spaces and tabs around it
    (RFC 9110 §5.5: parsers MUST exclude them before evaluating the value).

    uvicorn's httptools protocol keeps a value's trailing whitespace, and the `mcp` SDK (2.3.0) compares
    the routing headers as they come, `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` in
    `classify_inbound_request` (mcp/shared/inbound.py:452, 458, 467) and `Mcp-Param-*` in
    `validate_mcp_param_headers` (:584): a call with `Mcp-Name:  greet ` was refused as a mismatch
    (-32020). A value whose own spaces matter travels base64-encoded (SEP-2243), so trimming loses none."""
    return {**scope, "headers": [(name, value.strip(b" \t")) for name, value in scope["headers"]]}


async def _serve(server: MCPServer[Any], scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    state = request.app.state
    if not state.auth.enabled and _on_loopback(scope):
        refused = await TransportSecurityMiddleware(LOOPBACK).validate_request(
            request, is_post=request.method == "POST"
        )
        if refused is not None:
            await refused(scope, receive, send)
            return
    try:
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header[:7].lower() == "bearer " else None
        caller = state.auth.authenticate(bearer, None)
        caller.require_api_key()
    except TokentailError as exc:
        status, kind = describe(exc)
        await error_response(status, kind, str(exc), {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        return
    scope.setdefault("state", {})["caller"] = caller
    await server.session_manager.handle_request(scope, receive, send)


def _on_loopback(scope: Scope) -> bool:
    """Whether the gateway took the request on a loopback address (where a DNS rebinding attack lands)."""
    server = scope.get("server")
    host = str(server[0]) if server else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
