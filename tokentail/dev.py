"""`tokentail dev`: a private redis-server, gateways and workers, as child processes. With several
gateways, a round-robin balancer (tokentail/balancer.py) in front of them takes the port, as nginx
does in docker-compose.yml.

Its port is checked before anything starts: taken (by another `tokentail dev`, say), dev says so
and exits 1. Found only by the gateway, the other stack's gateway answered dev's readiness check in
its place, and the supervisor restarted the gateway, failing to bind each time, until it gave up.

A gateway, worker or balancer that dies is started again, as compose's `restart:` would
(tokentail/supervisor.py): killing a worker mid-answer shows the takeover. Redis is the state: its
end ends everything. Every child, Redis too, runs in a process group of its own, so Ctrl-C reaches
only this supervisor, which stops them in order (gateways and workers first, then Redis, which they
need until the end). On Linux each child also gets SIGTERM if the supervisor itself dies, so none
is left behind.
"""

import ctypes
import errno
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import click

from tokentail.redis_server import RedisServer, free_port
from tokentail.shared.plumbing.settings import get_settings
from tokentail.shared.vocabulary.catalog import BUILTIN_AGENTS
from tokentail.supervisor import Child, Stopping, how_it_ended, say, stop_all, supervise

_PR_SET_PDEATHSIG = 1
LOCAL_ORIGINS = "http://localhost:*,http://127.0.0.1:*"
CLI = (sys.executable, "-m", "tokentail.cli")
OFFLINE_API_KEY = "offline"  # the offline model takes any key; OpenAI's clients need one


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class Stop(Exception):
    """Asked to stop (Ctrl-C, SIGTERM) while starting up."""


def run_dev(
    host: str,
    port: int,
    workers: int,
    redis_url: str | None = None,
    log_level: str = "info",
    log_format: str = "text",
    gateways: int = 1,
    offline: bool = False,
) -> int:
    """Run `gateways` gateways and `workers` workers on a private redis-server, or on `redis_url`;
    `offline`: also the offline model's OpenAI API (tokentail/offline.py), which the workers' OpenAI
    clients use."""
    preexec = _die_with_parent()
    stopping = Stopping()
    stopping.install()
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="tokentail-dev-") as data_dir:
        redis = RedisServer(data_dir, preexec_fn=preexec, own_process_group=True) if redis_url is None else None
        try:
            _check_free(host, port)
            if redis is not None:
                redis_url = redis.start().url
            offline_port = free_port() if offline else None
            offline_url = f"http://127.0.0.1:{offline_port}/v1" if offline else None
            env = _environment(str(redis_url), log_level, log_format, offline_url)

            def redis_lost() -> str | None:  # Redis is the state: its end ends everything, even a start
                return _redis_lost(redis)

            def spawn(name: str, *command: str) -> None:
                if stopping.asked:
                    raise Stop
                child = Child(name, command)
                children.append(child)  # listed before it starts: stopped whatever comes next
                child.start(env, preexec)

            if offline_port is not None:
                spawn("offline model", *CLI, "offline", "--port", str(offline_port))
                _wait_ready(f"http://127.0.0.1:{offline_port}", children, stopping, redis_lost)
            replicas = _start_gateways_and_workers(spawn, host, port, gateways, workers, children, stopping, redis_lost)
            base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
            _wait_ready(base, children, stopping, redis_lost)
            origins = env["TOKENTAIL_CORS_ORIGINS"]
            _banner(base, str(redis_url), workers, replicas, origins, temporary=redis is not None, offline=offline_url)
            status = supervise(children, env, preexec, stopping, essential=redis_lost)
            if status == 0:
                click.echo("\ntokentail dev: stopping", err=True)
            return status
        except Stop:
            click.echo("\ntokentail dev: stopping", err=True)
            return 0
        except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
            say(str(exc))
            return 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
            stop_all(children)
            if redis is not None:
                redis.stop()


# How long a process dev starts may take to answer: a bound for one that hangs, not one that is slow
# (a busy machine has taken over half a minute to start a gateway).
STARTS_WITHIN_SECONDS = 120.0


def _start_gateways_and_workers(
    spawn: Callable[..., None],
    host: str,
    port: int,
    gateways: int,
    workers: int,
    children: list[Child],
    stopping: Stopping,
    lost: Callable[[], str | None],
) -> list[str]:
    """One gateway on the port; or several, each on a port of its own (returned), behind a balancer on it."""
    replicas = [] if gateways == 1 else [f"127.0.0.1:{free_port()}" for _ in range(gateways)]
    for i, replica in enumerate(replicas or [f"{host}:{port}"]):
        name = f"gateway {i + 1}" if replicas else "gateway"
        spawn(name, *CLI, "gateway", "--host", replica.rsplit(":", 1)[0], "--port", replica.rsplit(":", 1)[1])
    for i in range(workers):
        spawn(f"worker {i + 1}", *CLI, "worker", "--port", "0")  # no probe server: nothing probes them here
    if replicas:
        for replica in replicas:
            _wait_ready(f"http://{replica}", children, stopping, lost)
        spawn("balancer", sys.executable, "-m", "tokentail.balancer", f"{host}:{port}", *replicas)
    return replicas


def _check_free(host: str, port: int) -> None:
    """Raise RuntimeError, saying what to do, unless `host:port` can be listened on, as the gateway
    (or the balancer) started next will: every address of `host`, SO_REUSEADDR (a port whose last
    connections are in TIME_WAIT is free) and IPv6 apart from IPv4, as asyncio's servers bind."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeError(
                f"cannot listen on {host}:{port}: address already in use (by another tokentail dev?);"
                f" stop what holds it, or choose another port: tokentail dev --port {port + 1}"
            ) from None
        raise RuntimeError(f"cannot listen on {host}:{port}: {exc}") from None


def _environment(redis_url: str, log_level: str, log_format: str, offline_url: str | None) -> dict[str, str]:
    """The children's environment: this one's, on the dev Redis; with `offline_url`, the workers'
    OpenAI clients on the offline model's API."""
    env = {
        # Pages on a dev server's own port (Vite, Next) may call it, unless told otherwise.
        "TOKENTAIL_CORS_ORIGINS": LOCAL_ORIGINS,
        **os.environ,
        "TOKENTAIL_REDIS_URL": redis_url,
        "TOKENTAIL_LOG_LEVEL": log_level,
        "TOKENTAIL_LOG_FORMAT": log_format,
    }
    if offline_url is not None:
        env.update(OPENAI_BASE_URL=offline_url, OPENAI_API_KEY=OFFLINE_API_KEY)
        # Runs that name no model stay on the scripted model, as without a key.
        env.setdefault("TOKENTAIL_DEFAULT_MODEL", "scripted")
    return env


def _redis_lost(redis: RedisServer | None) -> str | None:
    """What to say if the private redis-server has ended: it holds every session, so nothing can go on."""
    if redis is None or redis.process is None or (returncode := redis.process.poll()) is None:
        return None
    return f"redis-server (pid {redis.process.pid}) {how_it_ended(returncode)}: it holds every session and the queue"


def _wait_ready(
    base: str,
    children: list[Child],
    stopping: Stopping,
    lost: Callable[[], str | None],
    timeout: float = STARTS_WITHIN_SECONDS,
) -> None:
    """Until `base` is ready; a child that exits meanwhile, or the loss `lost` names (Redis's: the
    gateway is never ready without it), ends the wait with the reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stopping.asked:
            raise Stop
        if (what := lost()) is not None:
            raise RuntimeError(f"{what}; stopping")
        for child in children:
            if (returncode := child.exited()) is not None:
                raise RuntimeError(f"{child.name} (pid {child.pid}) {how_it_ended(returncode)} while starting")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the gateway did not become ready at {base} within {timeout:.0f} s")


def _offline_line(offline: str | None) -> str:
    """The banner's line on the offline model: where it serves, or how to run on it without a key."""
    if offline:
        return (
            f"\n  offline   {offline}   (the offline model as an OpenAI API; the workers have"
            f" OPENAI_BASE_URL={offline} OPENAI_API_KEY={OFFLINE_API_KEY})"
        )
    if not os.environ.get("OPENAI_API_KEY"):
        return "\n  offline   no OPENAI_API_KEY: `tokentail dev --offline` runs framework agents on the offline model"
    return ""


def _banner(
    base: str,
    redis_url: str,
    workers: int,
    replicas: list[str],
    cors_origins: str,
    temporary: bool,
    offline: str | None = None,
) -> None:
    settings = get_settings()
    model = (settings.default_model or "scripted") if offline else settings.model
    agents = [
        *(f"{name} (built in)" for name in sorted(BUILTIN_AGENTS)),
        *(f"{n} ({p})" for n, p in settings.agents.items()),
    ]
    auth = (
        f"API keys required ({len(settings.tenants_by_key)} configured; the lines below send the first)"
        if settings.auth_enabled
        else "OFF: open to anyone who can reach it (set TOKENTAIL_API_KEYS and TOKENTAIL_SECRET)"
    )
    key = next(iter(settings.tenants_by_key), None) if settings.auth_enabled else None
    send_key = f" -H 'Authorization: Bearer {key}'" if key else ""
    cors = cors_origins.replace(",", ", ") or "none"
    console = (
        "an admin key (TOKENTAIL_ADMIN_KEYS) or a tenant's API key"
        if settings.auth_enabled or settings.admin_keys is not None
        else "open on this machine: auth is off"
    )
    behind = (
        f"\n            round-robin per connection to {len(replicas)} gateways: {', '.join(replicas)}"
        if replicas
        else ""
    )
    openai = _offline_line(offline)
    click.echo(
        f"""
tokentail dev is running
  chat      {base}/   (the demo chat page)
  gateway   {base}   (API docs: {base}/docs){behind}
  console   {base}/console   ({console})
  workers   {workers}
  redis     {redis_url}   {"(temporary, deleted on exit)" if temporary else "(yours: sessions stay in it)"}
  model     {model} by default{openai}
  agents    {", ".join(agents)}
  auth      {auth}
  cors      {cors}   (pages there may call the API: TOKENTAIL_CORS_ORIGINS)

Try it:
  curl -s -X POST {base}/v1/sessions{send_key} -H 'Content-Type: application/json' \\
       -d '{{"input":"hello","model":"scripted","params":{{"tokens":400,"tokens_per_second":50}}}}'
  curl -N{send_key} <events_url from the answer>

Press Ctrl-C to stop.
"""
    )
