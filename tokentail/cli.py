"""The `tokentail` command: dev, gateway, worker, offline, chat, archiver, migrate."""

import asyncio
import logging
import sys

import click
from click.core import ParameterSource
from pydantic import ValidationError
from pydantic_settings import SettingsError

from tokentail.shared.plumbing import tracing
from tokentail.shared.plumbing.gc_tuning import tune_for_server
from tokentail.shared.plumbing.logs import configure_logging
from tokentail.shared.plumbing.settings import Settings, get_settings, setting_problems

logger = logging.getLogger("tokentail")


INVALID_SETTINGS_EXIT = 2  # as a command line click refuses: the process was started wrong, not failed


def valid_settings() -> Settings:
    """The settings; or, where one is invalid, a line on stderr per problem, naming its variable and its
    rule, and exit code 2 (no traceback: nothing went wrong but the setting)."""
    try:
        return get_settings()
    except (ValidationError, SettingsError) as exc:
        for problem in setting_problems(exc):
            click.echo(f"Error: {problem}", err=True)
        sys.exit(INVALID_SETTINGS_EXIT)


@click.group()
@click.option("--log-level", default="info", show_default=True, envvar="TOKENTAIL_LOG_LEVEL")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="TOKENTAIL_LOG_FORMAT",
)
def main(log_level: str, log_format: str) -> None:
    """tokentail: resumable streaming gateway for AI agents."""
    configure_logging(log_level, log_format)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--gateways",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="more than one: each on a port of its own, behind a round-robin balancer on --port",
)
@click.option("--redis-url", help="use this Redis instead of starting a private redis-server")
@click.option(
    "--offline",
    is_flag=True,
    help="also serve the offline model as an OpenAI API, and point the workers' OpenAI clients at it "
    "(OPENAI_BASE_URL, OPENAI_API_KEY=offline): framework agents run with no key and no network",
)
def dev(host: str, port: int, workers: int, gateways: int, redis_url: str | None, offline: bool) -> None:
    """Run everything locally: a private redis-server (or --redis-url), gateways and workers."""
    from tokentail.dev import run_dev

    valid_settings()  # once, here: not in a traceback of each child
    logs = click.get_current_context().find_root().params  # `tokentail --log-format json dev` reaches the children
    level, fmt = logs["log_level"], logs["log_format"]
    sys.exit(
        run_dev(host, port, workers, redis_url, log_level=level, log_format=fmt, gateways=gateways, offline=offline)
    )


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def gateway(host: str, port: int) -> None:
    """Run the HTTP gateway (uvicorn)."""
    from tokentail.gateway.server import serve
    from tokentail.shared.vocabulary.catalog import unresolved_agents

    settings = valid_settings()
    if problems := unresolved_agents(settings.agents):
        raise click.ClickException("TOKENTAIL_AGENTS: " + "; ".join(problems))
    serve(settings, host, port, log_level=logging.getLevelName(logging.getLogger().level).lower())


CHAT_URL = "http://127.0.0.1:8000"


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=int)
def offline(host: str, port: int) -> None:
    """Serve the offline scripted model as an OpenAI-compatible API (`/v1/chat/completions`, streamed
    and with tool calls), for any code that takes OPENAI_BASE_URL: no API key, no network."""
    from tokentail.offline import serve

    serve(host, port, log_level=logging.getLevelName(logging.getLogger().level).lower())


@main.command()
@click.argument("question", required=False)
@click.option("--url", default=CHAT_URL, show_default=True, envvar="TOKENTAIL_URL")
@click.option("--session", "session_id", help="continue (or, without a question, replay and follow) this session")
@click.option(
    "--fork-at",
    type=click.IntRange(min=0),
    metavar="EVENT_ID",
    help="with --session: fork it at this event and follow the fork; inside a run, the run goes on there "
    "(the question, if any, as instructions for what it does from there on; --model, --agent, --param too)",
)
@click.option("--model", help="`scripted`, `openai:<name>`, `anthropic:<name>`, `openai-compatible:<name>`")
@click.option("--agent", help="an agent name (default: assistant)")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="a provider param; JSON values allowed")
@click.option("--api-key", envvar="TOKENTAIL_API_KEY", help="when the gateway requires one [env: TOKENTAIL_API_KEY]")
@click.option(
    "--answer",
    "answers",
    multiple=True,
    metavar="ANSWER",
    help="the answer to the run's next question, in the order asked: an approval's yes or no, a choice, "
    "a text, or a JSON value",
)
def chat(
    question: str | None,
    url: str,
    session_id: str | None,
    fork_at: int | None,
    model: str | None,
    agent: str | None,
    params: tuple[str, ...],
    api_key: str | None,
    answers: tuple[str, ...],
) -> None:
    """Ask a question and stream the answer to the terminal, resuming across dropped connections.

    A question the run asks is answered by the next --answer, else asked at the terminal. With
    neither (stdin is not a terminal), the command says how to answer it and exits with status 3.
    """
    from tokentail.chat import run_chat

    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request would interleave with the answer
    if question is None and session_id is None:
        raise click.UsageError("give a question, or --session to follow an existing session")
    if fork_at is not None and session_id is None:
        raise click.UsageError("--fork-at forks the session --session names: give it")
    # What the commands it suggests need to reach this gateway again; a key typed here is not shown.
    reach = [] if url == CHAT_URL else ["--url", url]
    if click.get_current_context().get_parameter_source("api_key") is ParameterSource.COMMANDLINE:
        reach += ["--api-key", "<your key>"]
    parsed = _parse_params(params)
    sys.exit(run_chat(url, question, session_id, model, agent, parsed, api_key, reach, answers, fork_at))


def _parse_params(pairs: tuple[str, ...]) -> dict[str, object]:
    import json

    parsed: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--param")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="where /healthz, /readyz and /metrics listen")
@click.option(
    "--port",
    default=9100,
    show_default=True,
    type=int,
    help="their port; 0 serves none. Left out and taken (another worker on this host), a free port is used",
)
def worker(host: str, port: int) -> None:
    """Run a worker that executes queued runs."""
    import uvloop

    from tokentail.worker.process.main import create_worker
    from tokentail.worker.providers.base import InvalidRequest
    from tokentail.worker.run.agents import check_agents

    settings = valid_settings()
    try:
        check_agents(settings)
    except InvalidRequest as exc:
        raise click.ClickException(f"TOKENTAIL_AGENTS: {exc}") from None
    tracing.setup(tracing.WORKER)  # after the agents' modules: one that set up its own provider (Logfire's) keeps it
    # arq's Worker binds to the current event loop when it is built, so set one up first.
    asyncio.set_event_loop(uvloop.new_event_loop())
    try:
        worker = create_worker(settings, probe_address=(host, port) if port else None)
    except OSError as exc:
        if click.get_current_context().get_parameter_source("port") is not ParameterSource.DEFAULT:
            raise click.ClickException(f"cannot serve the probes on {host}:{port} ({exc}); pick --port, or 0") from None
        # As the README runs them: several workers on one host, each started the same way.
        worker = create_worker(settings, probe_address=(host, 0))
        logger.warning("port %d is taken (another worker on this host?); probes on port %s", port, worker.probe_port)
    tune_for_server()
    if worker.probe_port is not None:
        logger.info("worker probes: http://%s:%d/healthz, /readyz, /metrics", host, worker.probe_port)
    worker.run()


@main.command()
def archiver() -> None:
    """Copy finished sessions to the archive (TOKENTAIL_ARCHIVE_URL), apart from the workers (which
    also do, each)."""
    import uvloop

    from tokentail.shared.connections.redis_clients import sessions_client
    from tokentail.shared.store.archive import ArchiveError, open_archive
    from tokentail.worker.process.archiver import Archiver

    settings = valid_settings()
    if (url := settings.archive_url) is None:
        raise click.ClickException("TOKENTAIL_ARCHIVE_URL is not set: there is no archive to copy sessions to")

    async def archive_forever() -> None:
        archive = await open_archive(settings)
        assert archive is not None
        redis = sessions_client(settings, max_connections=4, wait=10, socket_keepalive=True)
        try:
            await archive.check_schema()
            logger.info("archiving sessions to %s", url.rsplit("@", 1)[-1])  # not its password
            await Archiver(redis, archive, settings).run_forever()  # type: ignore[arg-type]
        finally:
            await redis.aclose()
            await archive.close()

    try:
        uvloop.run(archive_forever())
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--url", envvar="TOKENTAIL_ARCHIVE_URL", required=True, help="the archive's PostgreSQL")
def migrate(url: str) -> None:
    """Create or update the archive's tables (safe to run again, and from several places at once)."""
    from tokentail.shared.store.archive import SCHEMA_VERSION, ArchiveError, migrate

    try:
        applied = asyncio.run(migrate(url))
    except (ArchiveError, OSError) as exc:
        raise click.ClickException(f"cannot migrate the archive: {exc}") from None
    done = f"applied migrations {', '.join(map(str, applied))}" if applied else "nothing to do"
    click.echo(f"archive schema at version {SCHEMA_VERSION}: {done}")


@main.command()
@click.argument("url")
@click.option("--timeout", default=2.0, show_default=True, help="seconds to wait for the answer")
def healthcheck(url: str, timeout: float) -> None:
    """Exit 0 if URL answers 200, else 1: a probe for images without curl (compose healthchecks)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            healthy = response.status == 200
    except urllib.error.HTTPError as exc:
        exc.close()
        click.echo(f"unhealthy: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"unhealthy: {exc}", err=True)
        sys.exit(1)
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
