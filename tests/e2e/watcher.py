"""A client that follows a session's stream as a chat UI does, for the end-to-end tests."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from tests.clients.sse_client import Received, read_events
from tests.e2e.conftest import Stack
from tests.e2e.fake_llm_server import hold_slow_answers
from tests.support.waiting import eventually, scaled


class Watcher:
    """Follows a session's stream like a chat UI: resumes on drops, drops a retried attempt's text
    and, on `run.continued`, the text after its `from_event_id`."""

    def __init__(self, client: httpx2.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.seen = Received(200, [])
        self.arrival: dict[str, float] = {}  # of the first event of each type
        self.delta_arrivals: list[float] = []

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
        now = time.monotonic()
        self.arrival.setdefault(event[1], now)
        if event[1] == "message.delta":
            self.delta_arrivals.append(now)
            if "run.continued" in self.arrival:
                self.arrival.setdefault("first delta after run.continued", now)
        self.seen.events.append(event)

    def deltas(self) -> int:
        return len(self.seen.of("message.delta"))

    def answer(self) -> str:
        """The text a UI shows: the deltas after the last `run.retrying`, less those a `run.continued`
        drops (after its `from_event_id`)."""
        text: list[tuple[int, str]] = []
        for seq, kind, data in self.seen.events:
            if kind == "run.retrying":
                text.clear()
            elif kind == "run.continued":
                text = [(i, piece) for i, piece in text if i <= data["from_event_id"]]
            elif kind == "message.delta" and seq is not None:
                text.append((seq, data["text"]))
        return "".join(piece for _, piece in text)

    def all_text(self) -> str:
        """Every delta it received, dropping none."""
        return "".join(data["text"] for _, kind, data in self.seen.events if kind == "message.delta")


async def killed_in_second_turn(
    stack: Stack, url: str, body: dict[str, Any], before_kill: Callable[[str], Awaitable[None]] | None = None
) -> "Watcher":
    """A run of the fake LLM's slow answer with a tool (`body`'s input asks "slowly":
    tests/e2e/fake_llm_server.py, in this process: the `llm_url` fixture), its worker killed -9 in the
    model's second turn, after the tool, while the model's answer is held mid-text, and taken over by a
    second worker; `before_kill(session_id)` awaited just before the kill. Returns its watcher once the
    run has ended."""
    hold = hold_slow_answers()
    doomed = stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx2.AsyncClient(timeout=30) as client:
        created = (await client.post(f"{url}/v1/sessions", json=body)).json()
        watcher = Watcher(client, created["events_url"])
        following = asyncio.create_task(watcher.follow())
        await eventually(lambda: "run.started" in watcher.arrival, within=30)
        stack.worker()  # before the instant: its start must not push the kill past it
        await asyncio.to_thread(stack.wait_for_workers, 2)
        await asyncio.wait_for(hold.reached.wait(), scaled(30))

        def second_turn_shown() -> bool:  # some of the held answer's text reached the client
            tool = [kind for _, kind, _ in watcher.seen.events].index("tool.completed")
            return any(kind == "message.delta" for _, kind, _ in watcher.seen.events[tool:])

        await eventually(second_turn_shown, ignoring=(ValueError,), what="the held answer's first text")
        if before_kill is not None:
            await before_kill(created["session_id"])
        doomed.kill()
        hold.released.set()  # the takeover's model call goes through at once
        await asyncio.wait_for(following, scaled(60))
    return watcher
