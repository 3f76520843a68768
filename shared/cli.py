"""The `tokentail` command: dev, gateway, worker."""

import asyncio
import logging
import sys

import click

from shared.settings import get_settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group()
@click.option("--log-level", default="info", show_default=True, envvar="TOKENTAIL_LOG_LEVEL")
def main(log_level: str) -> None:
    """tokentail: resumable streaming gateway for AI agents."""
    _configure_logging(log_level)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
def dev(host: str, port: int, workers: int) -> None:
    """Run everything locally: a private redis-server, a gateway and workers."""
    from shared.dev import run_dev

    sys.exit(run_dev(host, port, workers))


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def gateway(host: str, port: int) -> None:
    """Run the HTTP gateway (uvicorn)."""
    from gateway.server import serve

    serve(get_settings(), host, port, log_level=logging.getLevelName(logging.getLogger().level).lower())


@main.command()
def worker() -> None:
    """Run a worker that executes queued runs."""
    import uvloop

    from worker.main import create_worker

    # arq's Worker binds to the current event loop when it is built, so set one up first.
    asyncio.set_event_loop(uvloop.new_event_loop())
    create_worker(get_settings()).run()


if __name__ == "__main__":
    main()
