"""The frames of streams that are over, kept per gateway: a response of OpenAI's Responses API, once it
has ended, is the same sequence of events for every reader, so resuming it after sequence number N is
a slice of what was rendered once, not the whole run read and rendered again (the Responses API
numbers its events from the run's start: a resume without this reads and renders every event before
N). Bounded by bytes, least recently used first out; nothing in it outlives the process, and a
reader is let in (its session found, its tenant checked) before it is looked up.
"""

from collections import OrderedDict

KEPT_BYTES = 16_777_216  # about 80 Responses API streams of 500 deltas
STREAM_BYTES = KEPT_BYTES // 4  # a longer stream is not kept: nor is one stream's copy held past this


class FinishedStreams:
    """What a reader of each stream was sent from a position on (the first reader to resume it did
    not render what came before its position: it only counted it), to its end."""

    def __init__(self, max_bytes: int = KEPT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._kept: OrderedDict[str, tuple[int, tuple[bytes, ...]]] = OrderedDict()  # key: (first, frames)
        self._bytes = 0

    def after(self, key: str, sequence: int) -> bytes | None:
        """The stream's frames after sequence number `sequence`, if kept from there on."""
        kept = self._kept.get(key)
        if kept is None or kept[0] > sequence + 1:
            return None
        self._kept.move_to_end(key)
        first, frames = kept
        return b"".join(frames[sequence + 1 - first :])

    def keep(self, key: str, first: int, frames: list[bytes]) -> None:
        """The frames of a stream that ended, from sequence number `first` on, in order."""
        size = sum(len(frame) for frame in frames)
        known = self._kept.get(key)
        if (known is not None and known[0] <= first) or size > min(STREAM_BYTES, self.max_bytes):
            return
        if known is not None:
            self._bytes -= sum(len(frame) for frame in known[1])
        self._kept[key] = (first, tuple(frames))
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._bytes -= sum(len(frame) for frame in dropped)
