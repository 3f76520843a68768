"""What a run costs: its attempts' usage, and the run's total, which its end reports.

Users pay for every model call, including those of an attempt that died, was handed over or was
cancelled mid-answer. So:

- A provider's usage report (`RunContext.add_usage`) counts for the attempt it came in, and is
  recorded with the run as it comes (record_usage.lua, with the session's last id then): an attempt
  that dies still counts what was reported before. A report still unsent when the run ends (the last
  model call's, most often) is left to the end, whose terminal event records the run's total: no
  record is sent for a run that has just ended.
- Output streamed after an attempt's last report and never reported (a model call cut by a crash, a
  hand-over, a cancel or a failure: the provider's report comes at the call's end) is estimated at
  `CHARS_PER_TOKEN` characters a token, and the attempt's entry says how much was estimated. Its
  input is not estimated: nothing in the stream tells it.
- `run.completed`, `run.failed` and `run.cancelled` carry the run's total (`input_tokens`,
  `output_tokens`), with `attempts` (each attempt's counts) when more than one attempt spent
  anything or a part is estimated.
"""

import asyncio
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.events import EventType
from tokentail.shared.vocabulary.records import RunRecord

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text
COUNTS = ("input_tokens", "output_tokens")
_STREAMED = (EventType.MESSAGE_DELTA.value, EventType.REASONING_DELTA.value)
# Where an attempt's events begin (a `run.retrying` is the next attempt's first event, right before its
# `run.started`: nothing of the attempt before comes after it).
_ATTEMPT_STARTS = (EventType.RUN_STARTED.value, EventType.RUN_CONTINUED.value)

AttemptUsage = dict[str, int]  # input_tokens, output_tokens, and maybe estimated_output_tokens, seq


def estimated_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def with_estimate(usage: Mapping[str, int], unreported_chars: int) -> AttemptUsage:
    """An attempt's usage with its output streamed past its last report estimated."""
    counts = {name: usage.get(name, 0) for name in COUNTS}
    if (estimate := estimated_tokens(unreported_chars)) > 0:
        counts["output_tokens"] += estimate
        counts["estimated_output_tokens"] = usage.get("estimated_output_tokens", 0) + estimate
    return counts


def unreported_chars(events: Iterable[tuple[int, str, dict[str, Any]]], run_id: str, since: int, until: int) -> int:
    """The characters of text and reasoning that `run_id` streamed in the attempt that ended before
    id `until` (its next attempt's first event), after id `since` (its last usage report), from the
    session's `(seq, type, data)` events in order."""
    chars = 0
    for seq, event_type, data in events:
        if seq >= until:
            break
        if data.get("run_id") != run_id:
            continue
        if event_type in _ATTEMPT_STARTS:
            chars = 0  # an earlier attempt's: only the last one before `until` counts here
        elif event_type in _STREAMED and seq > since:
            chars += len(data["text"])
    return chars


def run_usage(attempts: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """The run's usage as its end reports it, from each attempt's (by attempt number)."""
    spent = {  # the counts (not the record's `seq`) of the attempts that spent anything
        number: {name: usage.get(name, 0) for name in COUNTS}
        | ({"estimated_output_tokens": usage["estimated_output_tokens"]} if "estimated_output_tokens" in usage else {})
        for number, usage in attempts.items()
        if any(usage.get(name) for name in COUNTS)
    }
    total: dict[str, Any] = {name: sum(usage.get(name, 0) for usage in spent.values()) for name in COUNTS}
    if len(spent) > 1 or any("estimated_output_tokens" in usage for usage in spent.values()):
        total["attempts"] = [{"attempt": int(number), **spent[number]} for number in sorted(spent, key=int)]
    return total


class UsageMeter:
    """One attempt's usage as its agent reports it (`RunContext.add_usage`), recorded with the run
    as it comes, in the background, after the text streamed before it; and the run's total at its end."""

    def __init__(self, run: RunRecord, recorder: "UsageRecorder") -> None:
        self.attempt = run.attempt
        self._earlier = {number: usage for number, usage in run.attempt_usage.items() if number != str(run.attempt)}
        so_far = run.attempt_usage.get(str(run.attempt), {})  # a resume after an answer goes on counting
        self.usage: AttemptUsage = {name: so_far[name] for name in COUNTS if so_far.get(name)}
        self.reports = bool(run.attempt_usage)  # the agent reports usage (a model-driven one does: see run.py)
        self._recorder = recorder
        self._unreported_chars = 0  # streamed since the last report
        self._due: AttemptUsage | None = None  # the latest report, not recorded yet
        self._ended = False  # the run's end took its total: nothing more to record
        self._recording: asyncio.Future[None] | None = None

    def add(self, input_tokens: int, output_tokens: int) -> None:
        self.usage["input_tokens"] = self.usage.get("input_tokens", 0) + input_tokens
        self.usage["output_tokens"] = self.usage.get("output_tokens", 0) + output_tokens
        self.reports = True
        self._unreported_chars = 0
        self._due = dict(self.usage)
        if not self._ended and (self._recording is None or self._recording.done()):
            self._recording = asyncio.ensure_future(self._record())

    def streamed(self, chars: int) -> None:
        self._unreported_chars += chars

    async def estimate_taken_over(self, store: SessionStore, session_id: str, run: RunRecord) -> None:
        """This attempt took `run` over: the one before it was cut short, and what it streamed past its
        last report is estimated and recorded with it (its worker could not)."""
        previous = str(run.attempt - 1)
        if not self.reports or run.queued_seq is None or run.started_seq is None:
            return
        reported = run.attempt_usage.get(previous, {})
        events: list[tuple[int, str, dict[str, Any]]] = []
        after = run.queued_seq - 1
        while after + 1 < run.started_seq and (batch := await store.read(session_id, after, 1000)):
            events += [(event.seq, event.type.decode(), json.loads(event.data)) for event in batch]
            after = batch[-1].seq
        chars = unreported_chars(events, run.run_id, reported.get("seq", 0), run.started_seq)
        if chars:
            estimate = self._earlier[previous] = with_estimate(reported, chars)
            try:
                await self._recorder.record_usage(int(previous), lambda: estimate)
            except Exception as exc:  # the run's total has it all the same; only a later takeover would not
                logger.warning("the estimate of attempt %s was not recorded: %s", previous, exc)

    async def settle(self) -> None:
        """Wait until what was reported is recorded (before the attempt gives its lease up)."""
        if self._recording is not None:
            await asyncio.shield(self._recording)

    def total(self, cut: bool = False) -> dict[str, Any]:
        """The run's usage for its end, whose terminal event records it (a report not sent yet is not
        sent); `cut`: this attempt stopped mid-answer (a cancel, a failure), so what it streamed past
        its last report is estimated."""
        self._ended = True
        unreported = self._unreported_chars if cut and self.reports else 0
        return run_usage({**self._earlier, str(self.attempt): with_estimate(self.usage, unreported)})

    def _take_due(self) -> AttemptUsage | None:
        """The report to record as it is sent: the latest, or None (sent already, or left to the end)."""
        due, self._due = self._due, None
        return None if self._ended else due

    async def _record(self) -> None:
        while self._due is not None and not self._ended:
            try:
                await self._recorder.record_usage(self.attempt, self._take_due)
            except Exception as exc:  # the run's own writes report a lost lease or an outage
                logger.debug("usage not recorded (%s): a takeover estimates it", exc)
                return


class UsageRecorder(Protocol):
    """What records an attempt's usage with the run: its EventWriter, after the text before it, taking
    the report (`take_usage`) as it sends it; None: nothing to send."""

    async def record_usage(self, attempt: int, take_usage: Callable[[], AttemptUsage | None]) -> None: ...
