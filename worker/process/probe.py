"""The worker's own small HTTP server: `/healthz`, `/readyz` and `/metrics` for Prometheus, compose
and Kubernetes probes. It runs on the worker's event loop, so a loop that hangs fails the probes too.

    /healthz   200 while the event loop answers (liveness)
    /readyz    200 while Redis answered the worker recently, else 503 (readiness)
    /metrics   Prometheus text, or OpenMetrics when asked (with exemplars)
"""

import contextlib
import socket
import time
from collections.abc import Callable, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokentail.shared.plumbing.prometheus import exposition


def probe_app(last_redis_ok: Callable[[], float], ready_within: float) -> Starlette:
    """`last_redis_ok` gives the monotonic time Redis last answered the worker."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        silent_for = time.monotonic() - last_redis_ok()
        if silent_for > ready_within:
            message = f"Redis has not answered for {silent_for:.0f} s"
            return JSONResponse({"error": {"type": "redis_unavailable", "message": message}}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        body, media_type = exposition(request.headers.get("accept", ""))
        return Response(body, media_type=media_type)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)],
    )


class ProbeServer(uvicorn.Server):
    """uvicorn inside the worker, on a socket bound up front: a port in use fails the worker's start
    with a clear error (uvicorn would call sys.exit from a task). arq owns the process's signals, so
    this server must not take them."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        super().__init__(uvicorn.Config(app, access_log=False, log_config=None, lifespan="off"))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
            self.socket.listen(128)  # claims the port now: a second worker's bind fails here, not later
        except OSError:
            self.socket.close()
            raise

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets or [self.socket])
