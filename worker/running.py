"""The runs this worker process is executing, so a cancel can reach the task that runs one."""

import asyncio


class RunningRuns:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self._cancelled: set[str] = set()

    def add(self, run_id: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks[run_id] = task

    def discard(self, run_id: str) -> None:
        # Only this task's own entry: a later attempt of the same run may run here now.
        if self._tasks.get(run_id) is asyncio.current_task():
            del self._tasks[run_id]
            self._cancelled.discard(run_id)

    def cancel(self, run_id: str) -> bool:
        """Cancel the run's task if it runs here; it then ends the run with `run.cancelled`."""
        task = self._tasks.get(run_id)
        if task is None or run_id in self._cancelled:
            return False
        self._cancelled.add(run_id)
        task.cancel()
        return True

    def was_cancelled(self, run_id: str) -> bool:
        return run_id in self._cancelled

    def __len__(self) -> int:
        return len(self._tasks)
