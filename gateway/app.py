"""The gateway application: `create_app(settings)` opens Redis clients for its lifespan."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tokentail.gateway import hot_routes, protocols
from tokentail.gateway.access.auth import Authenticator
from tokentail.gateway.access.limits import RequestsInFlight, RunBudget, StreamSlots
from tokentail.gateway.access.peers import ClientAddresses
from tokentail.gateway.admin import routes as admin_routes
from tokentail.gateway.api_docs import add_api_docs
from tokentail.gateway.body_limit import BodySizeLimit
from tokentail.gateway.commands.webhook_urls import SessionWebhooks
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.gateway.cors import Cors
from tokentail.gateway.errors import error_response, install_error_handlers, outage_response
from tokentail.gateway.live import first_delta
from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.reading.response import call_detaching
from tokentail.gateway.reading.shutdown import StreamShutdown
from tokentail.gateway.routes import events, sessions, socket, tenant_webhook
from tokentail.shared.connections.redis_clients import AnyRedis, queue_client, sessions_client
from tokentail.shared.features.admission import Admission, TenantLines, line_bound_in_queueing
from tokentail.shared.features.agent_catalog import AgentDirectory
from tokentail.shared.features.tenant_webhooks import TenantWebhooks
from tokentail.shared.features.webhook_policy import WebhookPolicy
from tokentail.shared.plumbing import tracing
from tokentail.shared.plumbing.loop_lag import LoopLag
from tokentail.shared.plumbing.prometheus import exposition
from tokentail.shared.plumbing.settings import Settings, get_settings
from tokentail.shared.store.archive import Archive, open_archive
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.catalog import BUILTIN_AGENTS

STATIC = Path(__file__).parent / "static"  # the browser clients (/static/*.js) and two rooms: demo/, console/

logger = logging.getLogger(__name__)


class GatewayApp(FastAPI):
    hot: hot_routes.HotStack | None = None  # the hot routes' own stack (gateway/hot_routes.py), once installed
    client_addresses: ClientAddresses | None = None  # who is calling, through which proxy (set by create_app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.client_addresses is not None and scope["type"] != "lifespan":
            await self.client_addresses.resolve(scope)
        if scope["type"] == "http":
            first_delta.RECEIVED_AT.set(time.time())  # for the run this request may queue (first_delta.py)
            # With traces off, a hot request goes through the hot routes' own stack: the app's middleware
            # and error handlers, not FastAPI's request path (traced, it makes the request's span).
            if self.hot is not None and not tracing.ON and self.hot.route(scope) is not None:
                if self.root_path:
                    scope["root_path"] = self.root_path
                await call_detaching(self.hot, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        # Event streams outlive the framework's call (call_detaching), but not FastAPI's telemetry,
        # which wraps this stack: so a request's server span ends with its stream, not as an
        # incomplete response when the call returns, and the stream's own span is its child.
        return Detaching(super().build_middleware_stack())


class Detaching:
    """The app's middleware stack, called through `call_detaching`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app  # named so, as middleware name what they wrap (FastAPI looks for contrib's through them)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await call_detaching(self.app, scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    app = GatewayApp(
        title="tokentail",
        summary="Resumable streaming gateway for AI agents",
        version="0.1.0",
        lifespan=_lifespan(settings),
        docs_url=None,  # served offline by add_api_docs
        redoc_url=None,
        # With traces on (shared/plumbing/tracing.py), FastAPI's own server span per request and socket, its
        # parent from the request's traceparent; Prometheus (/metrics) keeps the HTTP metrics.
        telemetry={"operation_spans": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.client_addresses = app.state.client_addresses = ClientAddresses(settings.trusted_proxies)
    app.state.shutdown = StreamShutdown()
    app.state.auth = Authenticator(settings)
    app.state.chat_requests = RequestsInFlight(settings.max_chat_socket_requests)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(Cors, origins=settings.cors_origins)  # with none allowed, it still says why it refuses
    app.include_router(sessions.router)
    app.include_router(tenant_webhook.router)
    app.include_router(events.router)
    app.include_router(socket.router)
    for router in protocols.routers():
        app.include_router(router)
    admin_routes.install(app, settings)  # the operator console (gateway/admin/)
    app.hot = hot_routes.install(app)  # the requests every stream starts with, first (gateway/hot_routes.py)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_api_docs(app)

    _add_page_and_probes(app)
    return app


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What the gateway opens as it starts (its connections, the hub, the parts its routes use) and
    closes as it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Connections are bounded however many streams are open: one for the hub's notifications,
        # the rest shared by REST calls and the streams' catch-up reads.
        rest_connections = settings.gateway_redis_connections // 2
        options = {"socket_timeout": 10, "socket_keepalive": True}
        redis = sessions_client(settings, rest_connections, wait=10, **options)
        queue = queue_client(settings, rest_connections, wait=10, **options)  # with the queue apart
        archive = await open_archive(settings)  # what Redis forgot is read from it (connects on first use)
        read_connections = settings.gateway_redis_connections - rest_connections - 1
        hub = StreamHub(settings, read_connections=read_connections, archive=archive)
        await hub.start()
        app.state.shutdown.on_begin(hub.stop)
        app.state.hub = hub
        slots = _serve_with(app, settings, redis, queue, archive)
        slot_tasks = [asyncio.create_task(slots.renew_forever()), asyncio.create_task(slots.flush_forever())]
        lag = LoopLag(asyncio.get_running_loop())  # how late the loop runs (shared/plumbing/loop_lag.py)
        lag.start()
        if not settings.auth_enabled:
            logger.warning("auth is off: anyone who can reach this gateway may use it (set TOKENTAIL_API_KEYS)")
        try:
            yield
        finally:
            lag.stop()
            for task in slot_tasks:
                task.cancel()
            await asyncio.gather(*slot_tasks, return_exceptions=True)
            await slots.flush()  # the streams that ended last, so that their clients find them free elsewhere
            await hub.aclose()
            await redis.aclose()
            if queue is not None:
                await queue.aclose()
            if archive is not None:
                await archive.close()

    return lifespan


def _serve_with(
    app: FastAPI, settings: Settings, redis: AnyRedis, queue: Redis | None, archive: Archive | None
) -> StreamSlots:
    """The parts the routes find in `app.state`, made over the gateway's connections: its stream slots."""
    keys = Keys(settings.key_prefix)
    app.state.store = SessionStore(redis, settings, archive)
    app.state.runs = SessionWrites(redis, settings, queue=queue, archive=archive)
    app.state.webhooks = SessionWebhooks(WebhookPolicy(settings.webhook_allowed_urls), TenantWebhooks(redis, keys))
    app.state.agents = AgentDirectory(redis, keys, [*BUILTIN_AGENTS, *settings.agents])
    lines = TenantLines(
        queue or redis,
        keys,
        settings.max_queued_runs_per_tenant,
        Admission.of(settings),
        by_queueing=line_bound_in_queueing(settings) > 0,
    )
    app.state.tenant_lines = lines
    app.state.console = console = admin_routes.Console(
        redis, queue or redis, app.state.store, app.state.runs, app.state.auth, lines
    )
    app.state.shutdown.on_begin(console.live.stop)
    app.state.run_budget = RunBudget(redis, keys, settings.runs_per_minute, settings.fork_bytes_per_hour, lines)
    app.state.stream_slots = slots = StreamSlots(
        redis, keys, settings.max_streams_per_tenant, settings.max_streams_per_token
    )
    return slots


def _add_page_and_probes(app: FastAPI) -> None:
    """The demo page, the probes (/healthz, /readyz) and /metrics: the gateway's own, after the API's."""

    @app.get("/", include_in_schema=False)
    async def demo_page() -> FileResponse:
        return FileResponse(STATIC / "demo" / "index.html")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None)
    async def readyz() -> JSONResponse:
        """Ready while Redis answers and accepts writes (a full or read-only Redis could not take runs)."""
        try:
            await app.state.runs.writable()
        except Exception as exc:  # any failure to write to Redis means not ready
            failed = f"Redis failed: {type(exc).__name__}"
            return outage_response(exc) or error_response(503, "redis_unavailable", failed)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        body, media_type = exposition(request.headers.get("accept", ""))
        return Response(body, media_type=media_type)
