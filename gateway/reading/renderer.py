"""What the protocols that are not tokentail's own share: a stream of one reducer's operations
(gateway/reducer/reducer.py), each protocol a renderer of them.

A renderer holds only what each operation becomes (its `render`, through `op.OperationCases`: a
method per family of operations, each a `match` ending in `assert_never`, so the type checker names
a case it misses), its ids and
sequence numbers. What a takeover drops, what is open, what a client resuming is owed: the reducer
decides, once for every protocol. So catch-up, live tail and resume go through the same feed as
tokentail's own stream, and a client that comes back gets the same frames again.

`Renderer` renders; `FramedRenderer` also frames, for the protocols whose HTTP stream the gateway
writes (the AI SDK, AG-UI, the Responses API: an `Encoding`, gateway/reading/response.py). A2A's and
MCP's are framed by their SDKs' transports, which take the rendered parts.
"""

import json
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.streams import SSE_PING
from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.errors import InvalidLastEventId
from tokentail.shared.vocabulary.events import Gap

Part = TypeVar("Part")  # what an operation becomes before framing: a JSON object, or one already serialised


class Renderer(Generic[Part]):
    def __init__(self, reducer: Reducer) -> None:
        self.reducer = reducer
        # Over: the run of a run's stream ended, or a pause its protocol ends the response at.
        self.finished = False

    def render(self, operation: op.Operation) -> list[Part]:
        """What one operation becomes."""
        raise NotImplementedError

    def opening(self, gap: Gap | None) -> list[Part]:
        """What the stream starts with, before the first event."""
        return self.render(op.GapFound(gap)) if gap is not None else []

    def rendered(self, batch: Batch) -> list[tuple[list[Part], int | None]]:
        """What each event of the batch became, with its id (None for a gap), leaving out events that
        became nothing or that the client has (the reducer's `quiet`)."""
        out: list[tuple[list[Part], int | None]] = []
        if batch.gap is not None:
            out.append((self.render(op.GapFound(batch.gap)), None))
        bound = self.reducer.run_id is not None
        events, index = batch.events, 0
        while index < len(events):
            if passed := self.pass_quietly(events, index):
                index += passed
                continue
            event = events[index]
            index += 1
            parts: list[Part] = []
            for operation in self.reducer.reduce(event):
                parts += self.render(operation)
                if bound and isinstance(operation, op.RunEnded):
                    self.finished = True
            if parts and not self.reducer.quiet(event.seq):
                out.append((parts, event.seq))
            if self.finished:
                break
        return out

    def pass_quietly(self, events: list[StoredEvent], index: int) -> int:
        """How many events from `index` on this renderer's client is owed nothing for, reduced
        without operations (the deltas a resume passes: most of one), so many fewer to render."""
        return 0


@dataclass(frozen=True)
class Position:
    """Where a client resumes in a stream whose every frame has an id (AG-UI's, LangGraph's): the last
    frame an event became has the event's id, those before it `<id>.<k>` (`frame_ids`). After event
    `after`, having also the first `within` frames of the event after it (a stream cut inside an event)."""

    after: int
    within: int = 0

    @classmethod
    def of(cls, last_event_id: str, expected: str = "a frame id: <event id> or <event id>.<frame>") -> "Position":
        match = re.fullmatch(r"(\d{1,18})(?:\.(\d{1,4}))?", last_event_id)
        seq, part = match.groups() if match is not None else ("", None)
        if part is None and seq:
            return cls(int(seq))
        if not seq or int(seq) == 0:  # not an id; or frames of event 0, which there is not
            raise InvalidLastEventId(last_event_id, expected)
        return cls(int(seq) - 1, int(part or 0) + 1)

    def unsent(self, frames: list[str], seq: int) -> list[str]:
        """Of the frames event `seq` became, those the client does not have."""
        return frames[self.within :] if self.within and seq == self.after + 1 else frames


def frame_ids(seq: int, count: int) -> list[str]:
    """The ids of the `count` frames event `seq` became: `<seq>.<k>` (the k-th, from 0), the last `<seq>`."""
    return [f"{seq}.{k}" for k in range(count - 1)] + [str(seq)] if count else []


class FramedRenderer(Renderer[Part]):
    """A renderer that frames its parts too: an `Encoding` of an HTTP stream (Server-Sent Events)."""

    media_type = "text/event-stream"
    # A renderer keeps state per client (what is open, its ids and sequence numbers): its reader
    # renders every chunk, live ones too, in its own task (gateway/reading/response.py).
    live_frames = None

    def frames(self, parts: list[Part], seq: int | None) -> bytes:
        """The protocol's framing of what one event (with its id: None for a gap) became."""
        raise NotImplementedError

    def head(self, gap: Gap | None) -> bytes:
        return self.frames(self.opening(gap), None)

    def batch(self, batch: Batch) -> bytes:
        if not batch.chunks:
            return SSE_PING
        return b"".join(self.frames(parts, seq) for parts, seq in self.rendered(batch))

    def tail(self) -> bytes:
        return b""


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # made once: json.dumps makes one a call


def compact(value: Any) -> str:
    return _COMPACT.encode(value)
