"""A client that follows a session's stream as a chat UI does, for the end-to-end tests."""

import time
from typing import Any

import httpx2

from tests.sse_client import Received, read_events


class Watcher:
    """Follows a session's stream like a chat UI: resumes on drops, drops a retried attempt's text."""

    def __init__(self, client: httpx2.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.seen = Received(200, [])
        self.arrival: dict[str, float] = {}

    async def follow(self) -> None:
        while True:
            last = self.seen.ids[-1] if self.seen.ids else None
            part = await read_events(self.client, self.url, last_event_id=last, on_event=self._arrived)
            if part.status == 204:
                return

    async def follow_once(self) -> None:
        """One connection, until it ends or breaks."""
        last = self.seen.ids[-1] if self.seen.ids else None
        await read_events(self.client, self.url, last_event_id=last, on_event=self._arrived)

    def _arrived(self, event: tuple[int | None, str, dict[str, Any]]) -> None:
        self.arrival.setdefault(event[1], time.monotonic())
        self.seen.events.append(event)

    def deltas(self) -> int:
        return len(self.seen.of("message.delta"))

    def answer(self) -> str:
        """The text a UI shows: the deltas after the last `run.retrying`."""
        text: list[str] = []
        for _, kind, data in self.seen.events:
            if kind == "run.retrying":
                text.clear()
            elif kind == "message.delta":
                text.append(data["text"])
        return "".join(text)
