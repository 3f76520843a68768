"""The supervisor of `tokentail dev` (tokentail/supervisor.py) with small Python children: a child that
dies is started again, one that keeps dying at start-up is given up on with the reason, and a stop
asked during a restart's wait starts nothing more."""

import os
import signal
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.support.waiting import eventually_sync
from tokentail import supervisor
from tokentail.supervisor import Child, Stopping, stop_all, supervise

CRASHES_AT_ONCE = (sys.executable, "-c", "raise SystemExit(3)")
RUNS_UNTIL_STOPPED = (sys.executable, "-c", "import time; time.sleep(60)")


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "TICK", 0.02)
    monkeypatch.setattr(supervisor, "FIRST_DELAY", 0.1)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    stop_all(started)


def _start(children: list[Child], name: str, command: tuple[str, ...]) -> Child:
    child = Child(name, command)
    children.append(child)
    child.start(dict(os.environ), None)
    return child


def test_a_child_that_keeps_crashing_at_start_up_is_given_up_on_with_the_reason_and_backs_off(
    children: list[Child], capsys: pytest.CaptureFixture[str]
) -> None:
    _start(children, "worker 1", CRASHES_AT_ONCE)
    assert supervise(children, dict(os.environ), None, Stopping()) == 1
    said = capsys.readouterr().err
    restarts = [line for line in said.splitlines() if "exited with 3; starting a new one" in line]
    # Each quick failure doubles the wait before the next start: no hot loop.
    assert [line.rsplit(" in ", 1)[1] for line in restarts] == [
        "0.1 s (it had just started)",
        "0.2 s (it had just started)",
        "0.4 s (it had just started)",
        "0.8 s (it had just started)",
    ], said
    assert f"{supervisor.MAX_QUICK_FAILURES} times in a row, each within 10 s of starting" in said
    assert "not starting it again" in said


def test_a_child_that_ran_a_while_is_started_again_at_once(
    children: list[Child], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "QUICK_SECONDS", 0.0)  # every exit comes after a long run
    worker = _start(children, "worker 1", RUNS_UNTIL_STOPPED)
    first = worker.pid
    stopping = Stopping()
    supervising = threading.Thread(target=supervise, args=(children, dict(os.environ), None, stopping))
    supervising.start()
    try:
        assert first is not None
        os.kill(first, signal.SIGKILL)
        eventually_sync(lambda: worker.pid not in (None, first), what="a new worker 1")
        assert worker.exited() is None and worker.quick_failures == 0
    finally:
        stopping.asked = True
        supervising.join(timeout=10)
    said = capsys.readouterr().err
    assert f"worker 1 (pid {first}) killed by SIGKILL; starting a new one\n" in said
    assert f"worker 1 started again (pid {worker.pid})" in said


def test_a_stop_asked_while_a_restart_waits_starts_nothing_more(
    children: list[Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "FIRST_DELAY", 30.0)  # the restart waits long after a quick failure
    worker = _start(children, "worker 1", CRASHES_AT_ONCE)
    stopping = Stopping()
    supervising = threading.Thread(target=supervise, args=(children, dict(os.environ), None, stopping))
    supervising.start()
    eventually_sync(lambda: worker.restart_at is not None, what="a restart planned")
    stopping.asked = True  # what Ctrl-C does
    supervising.join(timeout=10)
    assert not supervising.is_alive()
    assert worker.process is None and worker.starts == 1


def test_the_loss_of_what_everything_needs_ends_the_supervision(
    children: list[Child], capsys: pytest.CaptureFixture[str]
) -> None:
    _start(children, "worker 1", RUNS_UNTIL_STOPPED)
    assert supervise(children, dict(os.environ), None, Stopping(), essential=lambda: "redis-server exited") == 1
    assert "tokentail dev: redis-server exited; stopping" in capsys.readouterr().err
