"""What a run's record holds that its attempt must not append again.

A run that goes on (taken over, or after the answer to its question) runs its agent again with its
record (shared/vocabulary/run_log.py). What the agent streams that the record already holds is not appended a
second time: text and reasoning up to the length recorded, a tool call's start and end by its call
id, any other event by its count per type (the third `status` the agent makes is the record's
third). A built-in agent streams little again (its recorded steps are replayed, not re-run); your
own agent streams again whatever it does not keep in `ctx.step`.

An inline child (worker/run/children.py `InlineChild`: a framework's sub-agent shown as a child run)
writes through its parent's writer, and its events carry its own run id, so the parent's record does
not hold them: each child the attempt opens again brings its own record (`child`), matched by the
same rules. A child whose record ended holds everything it streams again (it ended once); one cut by
the takeover keeps its record up to its parent's (`kept_until`), as clients do once told so.
"""

from typing import Any

from tokentail.shared.vocabulary.events import TERMINAL_EVENTS, EventType
from tokentail.shared.vocabulary.run_log import RunLog


class Replay:
    def __init__(self, log: RunLog) -> None:
        self.log = log
        self.text = log.text  # the answer as clients have it
        # Characters of text and of reasoning the record holds that this attempt has not reached.
        self._left: dict[str, int] = {
            EventType.MESSAGE_DELTA: len(self.text),
            EventType.REASONING_DELTA: log.reasoning_chars,
        }
        self._started = log.started_calls
        self._finished = log.finished_calls
        self._counts = log.counts()
        self._children: dict[str, Replay] = {}  # by run id: the inline children opened again
        self.ended = any(event.type in TERMINAL_EVENTS for event in log.events)  # (a child's)

    def child(self, run_id: str, log: RunLog | None) -> "Replay":
        """Hold inline child `run_id`'s record too (`log`, None: it was not spawned before)."""
        child = self._children[run_id] = Replay(log or RunLog())
        return child

    def new_text(self, event_type: str, text: str, run: str | None = None) -> str:
        """The part of `text` (of a text or reasoning delta; `run`: an inline child's) past what the record holds."""
        if run is not None:
            return self._children[run].new_text(event_type, text) if run in self._children else text
        if self.ended:
            return ""
        left = self._left[event_type]
        self.skip(event_type, len(text))
        return text[left:]

    def skip(self, event_type: str, chars: int) -> None:
        """Count `chars` characters of text (or reasoning) the record holds as streamed again."""
        self._left[event_type] = max(0, self._left[event_type] - chars)

    def skip_all(self) -> None:
        """Count the record's text and other events as streamed again: the agent goes on from its
        end. A tool call's events still show once (a graph resumed from a checkpoint reports the
        writes it had pending, a tool's result among them, again)."""
        self._left = dict.fromkeys(self._left, 0)
        self._counts.clear()

    def take_text(self) -> str:
        """The recorded answer text this attempt has not reached, counted as streamed now."""
        left, self._left[EventType.MESSAGE_DELTA] = self._left[EventType.MESSAGE_DELTA], 0
        return self.text[len(self.text) - left :] if left else ""

    def holds(self, event_type: str, data: Any) -> bool:
        """Whether the record holds this event already (each recorded event matches once)."""
        if self._children and (child := self._children.get(data.run_id)) is not None:
            return child.holds(event_type, data)
        if self.ended:
            return True
        call_id = getattr(data, "call_id", None)
        if event_type == EventType.TOOL_STARTED:
            return _take(self._started, call_id)
        if event_type in (EventType.TOOL_COMPLETED, EventType.TOOL_FAILED):
            return _take(self._finished, call_id)
        if self._counts[event_type] > 0:
            self._counts[event_type] -= 1
            return True
        return False


def _take(recorded: set[str], call_id: str | None) -> bool:
    if call_id in recorded:
        recorded.discard(call_id)
        return True
    return False
