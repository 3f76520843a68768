"""The runs this worker process is executing, and why one was stopped: so that a cancel reaches the
task that runs it, and the run ends the one way its stop calls for."""

import asyncio
from enum import StrEnum


class Stop(StrEnum):
    """Why a run's task was cancelled. No recorded reason means arq is stopping the worker."""

    CANCELLED = "cancelled"  # a client cancelled it: end it with `run.cancelled`
    LEASE_LOST = "lease_lost"  # another worker holds it now, or it was deleted: write nothing more


class RunningRuns:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self._stops: dict[str, Stop] = {}

    def add(self, run_id: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks[run_id] = task

    def discard(self, run_id: str) -> None:
        # Only this task's own entry: a later attempt of the same run may run here now.
        if self._tasks.get(run_id) is asyncio.current_task():
            del self._tasks[run_id]
            self._stops.pop(run_id, None)

    def stop(self, run_id: str, reason: Stop) -> bool:
        """Cancel the run's task if it runs here, recording why; the first reason stands."""
        task = self._tasks.get(run_id)
        if task is None or run_id in self._stops:
            return False
        self._stops[run_id] = reason
        task.cancel()
        return True

    def cancel(self, run_id: str) -> bool:
        """A client's cancel: the run ends with `run.cancelled`."""
        return self.stop(run_id, Stop.CANCELLED)

    def stop_reason(self, run_id: str) -> Stop | None:
        return self._stops.get(run_id)

    def __len__(self) -> int:
        return len(self._tasks)
