"""Ends open event streams cleanly when the gateway is asked to stop.

uvicorn waits for open responses before it exits, and an event stream never ends by itself. On
SIGINT/SIGTERM the server calls `begin()`, which stops the stream hub: every stream finishes its
response normally, and its client reconnects, to another replica, with its Last-Event-ID.
"""

from collections.abc import Callable


class StreamShutdown:
    def __init__(self) -> None:
        self.started = False
        self._on_begin: list[Callable[[], None]] = []

    def on_begin(self, callback: Callable[[], None]) -> None:
        self._on_begin.append(callback)

    def begin(self) -> None:
        self.started = True
        for callback in self._on_begin:
            callback()
