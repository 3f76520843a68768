"""docker-compose.yml run by a real Docker engine: the image built from deploy/Dockerfile, the services
started by `docker compose up --wait`, containers killed and scaled with the docker CLI.

Each stack is a compose project of its own (a unique `-p` name), so it never touches a user's `tokentail`
project, and ends with `docker compose down -v --remove-orphans` plus the removal of the image it built
under a tag of its own. Only the variables the compose file reads are set for it; the shell's provider keys
and a `.env` beside the compose file are kept out, so the stack is the same wherever the tests run.

Which container ran a run: the run record and events do not name a worker, but every worker logs
`run <run_id> of session <session_id> started (attempt N, <reason>)` (JSON, with `run_id`) as it starts a run, and
`docker logs` keeps each container's lines apart.
"""

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.stack import COMPOSE_FILE, load_compose
from tests.support.waiting import scaled

# Set by .ci/run once it has an engine: the docker tests must then run, and fail rather than skip.
REQUIRED_ENV = "TOKENTAIL_DOCKER_REQUIRED"
# Set by .ci/run, so that it can remove whatever a test it ran left behind (a killed pytest skips teardown).
PREFIX_ENV = "TOKENTAIL_COMPOSE_PROJECT_PREFIX"
MIN_ENGINE = (25, 0)  # the healthchecks' start_interval

STARTED = re.compile(  # worker/run/job.py
    r"run (\S+) of session \S+ started \(attempt (\d+), (?:start|takeover|resume)\) in worker pid \d+"
)
HANDED_OVER = re.compile(r"run (\S+) of session \S+ handed over: .*")

API_KEY = "compose-test-key-0123456789"
TENANT = "acme"


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def unavailable() -> str | None:
    """Why a real compose stack cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH (set DOCKER_HOST and PATH for a Docker Engine 25+ with Compose v2)"
    try:
        compose = _docker("compose", "version", timeout=30)
        if compose.returncode != 0:
            return f"no Compose v2 (`docker compose version` failed: {_first_line(compose.stderr)})"
        engine = _docker("version", "--format", "{{.Server.Version}}", timeout=30)
    except subprocess.TimeoutExpired as exc:
        return f"`{' '.join(map(str, exc.cmd))}` did not answer within {exc.timeout} s"
    if engine.returncode != 0:
        host = os.environ.get("DOCKER_HOST", "unset")
        return f"no Docker engine reachable (DOCKER_HOST={host}): {_first_line(engine.stderr)}"
    version = tuple(int(part) for part in re.findall(r"\d+", engine.stdout)[:2])
    if version < MIN_ENGINE:
        return f"Docker Engine {engine.stdout.strip()} is older than 25 (docker-compose.yml's start_interval)"
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")[:300]


def _compose_variables() -> set[str]:
    """Every variable docker-compose.yml interpolates or passes through from the shell."""
    text = COMPOSE_FILE.read_text()
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    for service in load_compose()["services"].values():
        environment = service.get("environment") or {}
        names.update(environment if isinstance(environment, dict) else (item.partition("=")[0] for item in environment))
    return names


def project_name() -> str:
    """A compose project name of its own: never a user's `tokentail`, nor another test run's."""
    return f"{os.environ.get(PREFIX_ENV) or 'tokentail-test'}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass
class StartedRun:
    container: str  # full container id
    attempt: int


@dataclass
class DockerCompose:
    directory: Path
    settings: Mapping[str, str]
    project: str = field(default_factory=project_name)

    def __post_init__(self) -> None:
        self.image = f"tokentail-test:{self.project}"
        self.env_file = self.directory / "empty.env"  # instead of a `.env` beside docker-compose.yml
        self.env_file.write_text("")
        env = {key: value for key, value in os.environ.items() if key not in _compose_variables()}
        env.update(
            {
                "TOKENTAIL_IMAGE": self.image,
                "TOKENTAIL_HTTP_PORT": "127.0.0.1:",  # "127.0.0.1::8080": a free port, on loopback only
                **self.settings,
            }
        )
        self.env = env

    # --- the CLI ---

    def compose(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.project, "--env-file", str(self.env_file)]
        done = subprocess.run([*argv, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker compose {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done

    def docker(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        return done.stdout

    # --- lifecycle ---

    def build(self) -> None:
        self.compose("build", "--quiet", timeout=1200)

    def scale(self, workers: int) -> None:
        """`up --wait` with this many workers; every other service at its count in the file (two gateways)."""
        self.compose("up", "--detach", "--no-build", "--wait", "--wait-timeout", "180", "--scale", f"worker={workers}")

    def down(self) -> None:
        """Everything the project started goes, volumes and the image included; the logs stay in `directory`."""
        try:
            self.save_logs()
        finally:
            self.compose("down", "--volumes", "--remove-orphans", "--timeout", "40", timeout=300, check=False)
            self.remove_images()

    def remove_images(self) -> None:
        """The images this project built: both services build (gateway and worker), so two, the first left
        untagged by the second."""
        label = f"label=com.docker.compose.project={self.project}"
        images = subprocess.run(
            ["docker", "images", "--all", "--quiet", "--filter", label], env=self.env, capture_output=True, text=True
        )
        for image in set(images.stdout.split()):
            subprocess.run(["docker", "image", "rm", "--force", image], env=self.env, capture_output=True)

    def save_logs(self) -> None:
        logs = self.compose("logs", "--no-color", "--timestamps", check=False)
        (self.directory / "compose.log").write_text(logs.stdout + logs.stderr)

    # --- what runs ---

    def public_url(self) -> str:
        address = self.compose("port", "nginx", "8080").stdout.strip()
        assert address, "nginx publishes no port"
        return f"http://{address}"

    def containers(self, service: str) -> list[str]:
        """The running containers of a service (full ids)."""
        return self.compose("ps", "--quiet", "--status", "running", service).stdout.split()

    def logs(self, container: str) -> list[dict[str, object]]:
        """A container's JSON log lines."""
        done = subprocess.run(["docker", "logs", container], env=self.env, capture_output=True, text=True, timeout=60)
        return json_lines(done.stdout + done.stderr)

    def follow_logs(self, container: str) -> "LogFollower":
        return LogFollower(self, container)

    def starts(self, containers: list[str]) -> dict[str, list[StartedRun]]:
        """run id -> the attempts started (in order), and by whom, from the workers' logs."""
        found: dict[str, list[StartedRun]] = {}
        for container in containers:
            for line in self.logs(container):
                match = STARTED.fullmatch(str(line.get("message", "")))
                if match:
                    found.setdefault(match[1], []).append(StartedRun(container, int(match[2])))
        return {run_id: sorted(starts, key=lambda start: start.attempt) for run_id, starts in found.items()}

    def wait_started(
        self, run_ids: list[str], containers: list[str], at_least: int | None = None, timeout: float = 60
    ) -> dict[str, StartedRun]:
        """The container that started the latest attempt of each run that started, once all of them (or
        `at_least` of them) have."""
        wanted = len(run_ids) if at_least is None else at_least
        deadline = time.monotonic() + scaled(timeout)
        while True:
            starts = self.starts(containers)
            if sum(run_id in starts for run_id in run_ids) >= wanted:
                return {run_id: starts[run_id][-1] for run_id in run_ids if run_id in starts}
            if time.monotonic() > deadline:
                missing = [run_id for run_id in run_ids if run_id not in starts]
                raise TimeoutError(f"{wanted} of {run_ids} not started within {timeout} s; not started: {missing}")
            time.sleep(0.2)

    def kill(self, container: str) -> None:
        self.docker("kill", container)

    def state(self, container: str) -> str:
        return self.docker("inspect", "--format", "{{.State.Status}}", container).strip()


class LogFollower:
    """`docker logs --follow` into a file, for a container about to be removed (its logs go with it)."""

    def __init__(self, stack: DockerCompose, container: str) -> None:
        self.path = stack.directory / f"{container[:12]}.log"
        with self.path.open("w") as out:
            self.process = subprocess.Popen(
                ["docker", "logs", "--follow", container], env=stack.env, stdout=out, stderr=subprocess.STDOUT
            )

    def lines(self, ended: bool) -> list[dict[str, object]]:
        """What the container logged: all of it once it is gone (`ended`), else what it wrote so far."""
        try:
            self.process.wait(timeout=30 if ended else 0)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait()
        return json_lines(self.path.read_text())


def json_lines(text: str) -> list[dict[str, object]]:
    """The JSON log lines of a container's output (others, such as nginx's or a traceback's, are left out)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def handed_over(lines: list[dict[str, object]]) -> set[str]:
    """The runs a stopping worker handed over, from its logs."""
    runs = set()
    for line in lines:
        match = HANDED_OVER.fullmatch(str(line.get("message", "")))
        if match:
            runs.add(match[1])
    return runs
