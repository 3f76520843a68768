"""The runs this worker process is executing, and why one was stopped: so that a cancel reaches the
task that runs it, and the run ends the one way its stop calls for."""

import asyncio
from collections.abc import Callable
from enum import StrEnum

# Why a blocked loop stopped a run (worker/process/watchdog.py), and what to do instead: said by the run's end.
HOW_TO_FIX = (
    "a synchronous call in async agent code (LangChain's invoke or predict, requests, time.sleep...): use the "
    "library's async API (ainvoke, astream, httpx.AsyncClient, asyncio.sleep) or run it in a thread "
    "(await asyncio.to_thread(...))"
)


class Stop(StrEnum):
    """Why a run's task was cancelled. No recorded reason means arq is stopping the worker."""

    CANCELLED = "cancelled"  # a client cancelled it: end it with `run.cancelled`
    LEASE_LOST = "lease_lost"  # another worker holds it now, or it was deleted: write nothing more
    BLOCKED_LOOP = "blocked_loop"  # it held the worker's event loop too long (worker/process/watchdog.py): fail it


class RunningRuns:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self._sessions: dict[str, str] = {}
        self._stops: dict[str, Stop] = {}
        self._on_stop: dict[str, Callable[[], None]] = {}
        self._on_steer: dict[str, Callable[[], None] | None] = {}  # None: expected, not started yet
        self._steered_early: set[str] = set()  # steered while expected
        # The worker's subscription to the steer channel: its number while it holds (Redis confirmed it),
        # None while it does not. A run that started while it held, and it held since, was told of every
        # steer sent to it (worker/process/main.py's listener): the run need not ask Redis whether one waits.
        self._hearing: int | None = None
        self._subscriptions = 0

    def hearing(self) -> None:
        """The steer channel is subscribed (confirmed): from now on, every steer is told."""
        self._subscriptions += 1
        self._hearing = self._subscriptions

    def deaf(self) -> None:
        """The listener lost its subscription: steers sent meanwhile are not told."""
        self._hearing = None

    def told_of_steers(self) -> Callable[[], bool]:
        """Whether every steer sent from now on is told to this worker, as long as the answer holds:
        asked before a run starts (`expect`), what it says is true of all the run's steers."""
        since = self._hearing
        return lambda: since is not None and self._hearing == since

    def expect(self, run_id: str) -> None:
        """A run is about to start here: a steer told before it is `add`ed is kept for it."""
        self._on_steer.setdefault(run_id, None)

    def add(
        self,
        run_id: str,
        session_id: str,
        on_stop: Callable[[], None] = lambda: None,
        on_steer: Callable[[], None] = lambda: None,
    ) -> None:
        """The current task runs `run_id`; `on_stop` is told when it is stopped, after its task is
        cancelled (the run's writer: so that an agent that swallowed the cancel stops all the same);
        `on_steer` when it is steered."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks[run_id] = task
        self._sessions[run_id] = session_id
        self._on_stop[run_id] = on_stop
        self._on_steer[run_id] = on_steer
        if run_id in self._steered_early:
            self._steered_early.discard(run_id)
            on_steer()

    def listed(self) -> list[tuple[str, str]]:
        """(session id, run id) of each run this process runs now."""
        return [(session_id, run_id) for run_id, session_id in self._sessions.items()]

    def run_of(self, task: "asyncio.Task[object]") -> tuple[str, str] | None:
        """The run (and its session) that `task` runs, if any. Read from another thread while the loop
        is blocked: the copy is taken at once, and a dict changed meanwhile only means not this time."""
        try:
            found = [run_id for run_id, running in list(self._tasks.items()) if running is task]
        except RuntimeError:
            return None
        return (found[0], self._sessions.get(found[0], "?")) if found else None

    def discard(self, run_id: str) -> None:
        # Only this task's own entry: a later attempt of the same run may run here now.
        if self._tasks.get(run_id) is asyncio.current_task():
            del self._tasks[run_id]
            self._sessions.pop(run_id, None)
            self._stops.pop(run_id, None)
            self._on_stop.pop(run_id, None)
            self._on_steer.pop(run_id, None)

    def forget(self, run_id: str) -> None:
        """A run `expect`ed that did not start here."""
        if run_id not in self._tasks:
            self._on_steer.pop(run_id, None)
            self._steered_early.discard(run_id)

    def stop(self, run_id: str, reason: Stop) -> bool:
        """Cancel the run's task if it runs here, recording why; the first reason stands."""
        task = self._tasks.get(run_id)
        if task is None or run_id in self._stops:
            return False
        self._stops[run_id] = reason
        task.cancel()
        self._on_stop[run_id]()
        return True

    def cancel(self, run_id: str) -> bool:
        """A client's cancel: the run ends with `run.cancelled`."""
        return self.stop(run_id, Stop.CANCELLED)

    def steered(self, run_id: str) -> None:
        """A steer was sent to the run: tell it, if it runs here (or keep it for it, if it is starting)."""
        if run_id not in self._on_steer:
            return
        if (on_steer := self._on_steer[run_id]) is not None:
            on_steer()
        else:
            self._steered_early.add(run_id)

    def stop_reason(self, run_id: str) -> Stop | None:
        return self._stops.get(run_id)

    def __len__(self) -> int:
        return len(self._tasks)
