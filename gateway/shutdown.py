"""Ends open event streams cleanly when the gateway is asked to stop.

uvicorn waits for open responses before it exits, and an SSE response never ends by itself. On
SIGINT/SIGTERM the server calls `begin()`: every stream blocked on Redis is woken (its task is
cancelled, and the stream swallows that one cancellation) and finishes its response normally.
The client sees a closed stream and reconnects, to another replica, with its Last-Event-ID.
"""

import asyncio


class StreamShutdown:
    def __init__(self) -> None:
        self.started = False
        self._waiting: set[asyncio.Task[object]] = set()

    def begin(self) -> None:
        self.started = True
        for task in self._waiting:
            task.cancel()

    def waiting(self) -> "_Waiting":
        """Context for one blocking read that `begin()` may interrupt."""
        return _Waiting(self)


class _Waiting:
    __slots__ = ("_shutdown", "_task")

    def __init__(self, shutdown: StreamShutdown) -> None:
        self._shutdown = shutdown
        task = asyncio.current_task()
        assert task is not None
        self._task = task

    def __enter__(self) -> None:
        self._shutdown._waiting.add(self._task)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        self._shutdown._waiting.discard(self._task)
        if exc_type is asyncio.CancelledError and self._shutdown.started and self._task.cancelling() == 1:
            self._task.uncancel()
            return True  # our own cancellation: the caller sees the read return nothing
        return False
