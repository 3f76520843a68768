"""What the UI protocol encodings share: reading a session's stored events into another protocol.

A translation is a pure function of the stored events, in order, plus what is open at the point
reached (a text block, a reasoning block): so catch-up, live tail and resume go through the same
feed as tokentail's own stream, and a client that comes back gets the same frames again. Each
protocol (gateway/encodings/ai_sdk.py, gateway/encodings/ag_ui.py) says what one event becomes.

- `run_id`: a UI protocol's response is one run (one assistant message): only its events count,
  and the stream closes after its last one. None: every run of the session, one after the other.
- `quiet_until`: events up to this id only rebuild what is open; the client has their frames. A
  client resuming mid-run after id N reads from the run's start, and is sent only what follows N.
"""

import json
from typing import Any, ClassVar, Generic, TypeVar

from tokentail.gateway.encodings.sse import PING
from tokentail.gateway.reading.feed import Batch
from tokentail.shared.events import DATA_PREFIX, TERMINAL_EVENTS, Gap

Part = TypeVar("Part")  # what an event becomes before framing: a JSON object, or one already serialised


class Translation(Generic[Part]):
    media_type = "text/event-stream"
    # The handler of each event type a chat UI shows (data.<name> goes to on_data).
    handlers: ClassVar[dict[str, str]] = {
        "run.queued": "on_queued",
        "run.started": "on_started",
        "message.delta": "on_text",
        "reasoning.delta": "on_reasoning",
        "status": "on_status",
        "tool.started": "on_tool_started",
        "tool.completed": "on_tool_completed",
        "tool.failed": "on_tool_failed",
        "run.retrying": "on_retrying",
        "run.continued": "on_continued",
        "run.completed": "on_completed",
        "run.failed": "on_failed",
        "run.cancelled": "on_cancelled",
        "input.required": "on_input_required",
        "input.received": "on_input_received",
    }

    def __init__(self, run_id: str | None = None, quiet_until: int = 0) -> None:
        self.run_id = run_id
        self.quiet_until = quiet_until
        self.finished = False
        self.event_ts = 0.0  # the Redis time (s) of the event being translated

    def head(self, gap: Gap | None) -> bytes:
        return self.frames(self.on_gap(gap), None) if gap is not None else b""

    def batch(self, batch: Batch) -> bytes:
        if not batch.chunks:
            return PING
        return b"".join(self.frames(parts, seq) for parts, seq in self.translate(batch))

    def translate(self, batch: Batch) -> list[tuple[list[Part], int | None]]:
        """What each event of the batch became, with its id (None for a gap), leaving out events
        that became nothing or that the client has."""
        out: list[tuple[list[Part], int | None]] = [(self.on_gap(batch.gap), None)] if batch.gap is not None else []
        for event in batch.events:
            data = json.loads(event.data)
            if self.run_id is not None and data.get("run_id") != self.run_id:
                continue
            event_type = event.type.decode()
            self.event_ts = event.ts_us / 1e6
            if event_type.startswith(DATA_PREFIX):
                parts = self.on_data(event_type.removeprefix(DATA_PREFIX), data, event.seq)
            else:
                handler = self.handlers.get(event_type)
                parts = getattr(self, handler)(data, event.seq) if handler is not None else []
            self.made(parts, event.seq)
            if parts and event.seq > self.quiet_until:
                out.append((parts, event.seq))
            if self.run_id is not None and event_type in TERMINAL_EVENTS:
                self.finished = True
            if self.finished:  # the run's end, or a pause its protocol ends the response at
                break
        return out

    def tail(self) -> bytes:
        return b""

    def made(self, parts: list[Part], seq: int) -> None:
        """What event `seq` became, whether the client has it already or not."""

    def frames(self, parts: list[Part], seq: int | None) -> bytes:
        """The protocol's framing of what one event (with its id) became."""
        raise NotImplementedError

    def on_gap(self, gap: Gap) -> list[Part]:
        raise NotImplementedError

    def on_data(self, name: str, data: dict[str, Any], seq: int) -> list[Part]:
        raise NotImplementedError


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
