"""Runs the gateway under uvicorn, ending open event streams cleanly on SIGINT/SIGTERM."""

import asyncio
from types import FrameType

import uvicorn
from fastapi import FastAPI

from tokentail.gateway.app import create_app
from tokentail.gateway.protocol import GatewayHttpProtocol
from tokentail.shared.plumbing import tracing
from tokentail.shared.plumbing.gc_tuning import tune_for_server
from tokentail.shared.plumbing.settings import Settings


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in a signal handler: hand the work to the event loop instead of touching tasks here.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            loop.call_soon_threadsafe(self._app.state.shutdown.begin)
        super().handle_exit(sig, frame)


def server_config(app: FastAPI, settings: Settings, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=GatewayHttpProtocol.bounded(settings.max_header_bytes, settings.stalled_client_seconds),
        # A WebSocket message past this closes the socket (1009); up to it, the app refuses what is
        # over max_request_bytes with an error message and keeps the socket.
        ws_max_size=4 * settings.max_request_bytes,
        # A WebSocket client that stops reading cannot answer a ping: closed within the same bound
        # as a stalled HTTP stream (gateway/protocol.py).
        ws_ping_interval=settings.stalled_client_seconds / 2,
        ws_ping_timeout=settings.stalled_client_seconds / 2,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        # uvicorn's 5 s equals httpx's and is below every load balancer's idle timeout (ALB 60 s): a
        # request sent on a connection just as the gateway closes it fails (ReadError, a 502).
        timeout_keep_alive=settings.keep_alive_seconds,
        # The app reads X-Forwarded-For/-Proto itself, from TOKENTAIL_TRUSTED_PROXIES only, after keeping
        # the socket's peer (gateway/access/peers.py): uvicorn's rewrite would hide it. (So uvicorn's
        # FORWARDED_ALLOW_IPS is not read.)
        proxy_headers=False,
        log_config=None,  # uvicorn's records go to tokentail's handler: one format, credentials scrubbed
    )


def serve(settings: Settings, host: str, port: int, log_level: str = "info") -> None:
    tracing.setup(tracing.GATEWAY)
    app = create_app(settings)
    tune_for_server()
    GatewayServer(server_config(app, settings, host, port, log_level), app).run()
