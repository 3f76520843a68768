"""The child processes of `tokentail dev`, kept running as compose's `restart:` keeps containers.

A gateway, worker or balancer that exits is said (its name, pid and how it ended) and started again
with the same command, so a `kill -9` of a worker mid-answer shows the takeover the demo promises
instead of ending the stack. One that keeps dying right after it starts (a bad setting, an import
error) is not restarted in a hot loop: each quick failure doubles the wait before the next start,
and after `MAX_QUICK_FAILURES` in a row the supervisor gives up and says why. Redis is no such
child: it is the state, and its end ends everything.

Signals only set a flag (`Stopping`) that the loops here look at every `TICK` seconds: a Ctrl-C that
came in the middle of starting a child then never leaves one started and not yet listed.
"""

import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType

import click

TICK = 0.2  # how often the supervisor looks at its children
QUICK_SECONDS = 10.0  # a child that exits sooner than this after its start failed "quickly"
MAX_QUICK_FAILURES = 5  # in a row: then the supervisor stops, rather than restart it forever
FIRST_DELAY = 0.5  # the wait before restarting after the first quick failure, doubled after each next
MAX_DELAY = 8.0


def say(message: str) -> None:
    click.echo(f"tokentail dev: {message}", err=True)


class Stopping:
    """Set by SIGINT and SIGTERM; looked at by every loop of the supervisor."""

    def __init__(self) -> None:
        self.asked = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._ask)
        signal.signal(signal.SIGTERM, self._ask)

    def _ask(self, signum: int, frame: FrameType | None) -> None:
        self.asked = True


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with {returncode}"


@dataclass
class Child:
    """One supervised process: its name in messages, its command, and its restarts."""

    name: str
    command: tuple[str, ...]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_failures: int = 0  # in a row; a child that ran QUICK_SECONDS clears it
    restart_at: float | None = None  # waiting to start again, from then
    starts: int = 0  # how many times it was started

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, env: Mapping[str, str], preexec: Callable[[], None] | None) -> None:
        # Its own session: a Ctrl-C in the terminal reaches the supervisor alone, which stops it in order.
        self.process = subprocess.Popen(self.command, env=env, start_new_session=True, preexec_fn=preexec)
        self.started_at = time.monotonic()
        self.restart_at = None
        self.starts += 1
        again = " again" if self.starts > 1 else ""
        say(f"{self.name} started{again} (pid {self.process.pid})")

    def exited(self) -> int | None:
        """Its return code if it has exited since it was started, else None."""
        return self.process.poll() if self.process is not None else None


class GaveUp(Exception):
    """A child kept failing right after it started: restarting it again would only loop."""


def restart_if_exited(child: Child, now: float) -> None:
    """If `child` has exited: say so and plan its restart (at once, or after a backoff if it died
    soon after starting); raise GaveUp after too many quick failures in a row."""
    returncode = child.exited()
    if returncode is None or child.process is None:
        return
    quick = now - child.started_at < QUICK_SECONDS
    child.quick_failures = child.quick_failures + 1 if quick else 0
    ended = f"{child.name} (pid {child.process.pid}) {how_it_ended(returncode)}"
    if child.quick_failures >= MAX_QUICK_FAILURES:
        raise GaveUp(
            f"{ended}, {child.quick_failures} times in a row, each within {QUICK_SECONDS:.0f} s of starting;"
            " not starting it again (its own lines above say why)"
        )
    delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (child.quick_failures - 1)) if quick else 0.0
    child.process = None
    child.restart_at = now + delay
    say(f"{ended}; starting a new one" + (f" in {delay:.1f} s (it had just started)" if delay else ""))


def supervise(
    children: list[Child],
    env: Mapping[str, str],
    preexec: Callable[[], None] | None,
    stopping: Stopping,
    essential: Callable[[], str | None] = lambda: None,
) -> int:
    """Keep `children` running until asked to stop (0) or until `essential()` names something
    whose loss ends everything, or a child keeps failing (1)."""
    while not stopping.asked:
        if (lost := essential()) is not None:
            say(f"{lost}; stopping")
            return 1
        now = time.monotonic()
        for child in children:
            try:
                restart_if_exited(child, now)
            except GaveUp as exc:
                say(str(exc))
                return 1
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                child.start(env, preexec)
        time.sleep(TICK)
    return 0


def stop_all(children: list[Child], timeout: float = 10.0) -> None:
    """SIGTERM to every child at once, then wait for each (SIGKILL past `timeout`)."""
    running = [child for child in children if child.process is not None]
    for child in running:
        assert child.process is not None
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + timeout
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} (pid {child.process.pid}) did not stop in {timeout:.0f} s; killing it")
            child.process.kill()
            child.process.wait()
