"""Attempt: one attempt at a run as tokentail's own code drives it, beyond the agent API.

`RunContext` (worker/run/context.py) is the agent author's API. The run (worker/run/job.py), the built-in
loop (worker/run/agent_loop.py) and the framework adapters (tokentail/frameworks/) also need the
attempt's internals, which they reach as `ctx.this_attempt` (`ctx.attempt` is its number); an agent
of your own needs none of them, and they may change in any release. Most of them are how an attempt
goes on from its run's record (worker/run/recovery/):

- Steps (`step_key`, `recorded_step`, `record_step`; `RunContext.step` is made of them): results
  recorded with the run once, which an attempt that goes on finds by key instead of doing again.
- Steers (`take_steers`, `steers_sent`): the input sent to the run while it works, taken in as a
  step, through the run's lease.
- The replay (worker/run/recovery/replay.py): what the record holds is not appended again. The writer
  asks it of each event (as its `recorded`, the one tie between the two); the loop and the adapters
  tell it what they replayed or skip (`replayed`, `skip_recorded`), and take or drop the text
  clients have of a cut model turn (`resume_text`, `restart_resumed_text`).
- The run's answer (`output`, `answered`): what clients kept from before this attempt, then what
  this attempt streamed.

The rest: the attempt's writer, its usage meter, its span (when traced), and the tool calls it has
open (`open_tool_calls`: those the agent left open when it raised, which the run ends through the
context).
"""

import json
from collections import Counter
from typing import Any

from tokentail.shared.vocabulary.events import EventType, RunContinued
from tokentail.shared.vocabulary.records import MAX_STEP_BYTES, STEERS_STEP, RunRecord, Steer
from tokentail.shared.vocabulary.run_log import RunLog
from tokentail.worker.agent_errors import StepTooLarge
from tokentail.worker.run.recovery.replay import Replay
from tokentail.worker.run.traces import AttemptSpan
from tokentail.worker.run.usage import UsageMeter
from tokentail.worker.writes.writer import EventWriter, is_answer


class Attempt:
    """One attempt at a run, as its worker runs it: the writer and usage meter it streams through,
    the steps and steers it records, the replay of what the run's record holds (an attempt that goes
    on from it), and the run's answer so far. Made with the attempt's `RunContext`, which the agent
    sees; this is what tokentail's own code drives the attempt with (`ctx.this_attempt`)."""

    def __init__(self, writer: EventWriter, run: RunRecord, meter: UsageMeter, log: RunLog | None) -> None:
        self.writer = writer
        self.meter = meter
        self.open_calls: dict[str, tuple[float, str | None]] = {}  # call id -> when it started, by which agent
        self.span: AttemptSpan | None = None  # the attempt's span, when traced (worker/run/traces.py)
        self._run_id = run.run_id
        self._number = run.attempt
        self._steps = dict(run.steps)  # recorded before this attempt, and by it
        self._not_replayed = set(run.steps)  # recorded before this attempt, and not reached by it yet
        self._step_names: Counter[str] = Counter()  # steps taken so far in this attempt, by name
        # `log`: the run's record, when this attempt goes on from it (after an answer; taken over,
        # unless it started over). Its agent runs again, and what the record holds is not appended again.
        self._replay = None if log is None else Replay(log)
        writer.recorded = self._replay
        self._kept_text = "" if self._replay is None else self._replay.text  # the answer clients kept
        self._answered_before = log is not None and any(is_answer(event.type) for event in log.events)

    def step_key(self, name: str) -> str:
        """The key of the next step named `name` in this attempt."""
        if name.startswith("@"):  # (the steps hash keeps each step's seq under `@<key>`: record_step.lua)
            raise ValueError(f"a step's name may not start with '@': {name!r}")
        index = self._step_names[name]
        self._step_names[name] += 1
        return f"{name}#{index}"

    def recorded_step(self, key: str) -> Any:
        """The result step `key` recorded (None if it was not)."""
        stored = self._steps.get(key)
        self._not_replayed.discard(key)
        return None if stored is None else json.loads(stored)

    def traced_replay(self, **attributes: str) -> None:
        """Mark a step or a tool call that this attempt replays from the record, executing nothing,
        on its span (the tool's name and call id, or the step's key)."""
        if self.span is not None:
            self.span.replayed(**attributes)

    async def record_step(self, key: str, value: Any) -> Any:
        """Record `value` as step `key`'s result, after what the run streamed before it; returns
        the value as a replay would (through JSON)."""
        try:
            stored = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a step's result must be JSON: {exc}") from None
        if (size := len(stored.encode())) > MAX_STEP_BYTES:
            raise StepTooLarge(f"step {key!r}: a result of {size} bytes exceeds {MAX_STEP_BYTES} (MAX_STEP_BYTES)")
        lease = self.writer.lease
        await self.writer.in_order(lambda: lease.record_step(key, stored))
        self._steps[key] = stored
        return json.loads(stored)

    async def take_steers(self, only_if_told: bool = False) -> list[Steer]:
        """The steers sent to the run since its agent last took them in, taken in now, once (see
        `RunContext.steers`); in an attempt that goes on, those taken at this point before. An attempt
        still replaying what its record holds takes none: what it replays was made without them.
        `only_if_told`: look for them only if this worker was told of one (no round trip otherwise),
        as when it is sure to be told of each (`SteerInbox.told`)."""
        key = self.step_key(STEERS_STEP)
        lease = self.writer.lease
        inbox = lease.inbox
        inbox.listening = True
        recorded = self.recorded_step(key)
        only_if_told = only_if_told or inbox.told()
        if recorded is None and (self._not_replayed or (only_if_told and not inbox.sent.is_set())):
            return []
        if recorded is None:
            output_at = len(self.output)
            applied = await self.writer.in_order(lambda: lease.apply_steers(key, output_at))
            if applied.steers is None:
                return []
            self._steps[key] = applied.steers.decode()
            recorded = json.loads(applied.steers)
        else:
            self.traced_replay(**{"tokentail.step.key": key})
        return [Steer.model_validate(steer) for steer in recorded]

    @property
    def steers_sent(self) -> bool:
        """Whether a steer was sent since the agent last took steers in (no Redis read)."""
        return self.writer.lease.inbox.sent.is_set()

    @property
    def streamed_text(self) -> str:
        """The answer text the run's clients had when this attempt started ("" on a first attempt)."""
        return self._replay.text if self._replay is not None else ""

    def resume_text(self) -> str:
        """The answer text the run's clients have and this attempt has not streamed yet, counted as
        streamed now."""
        return self._replay.take_text() if self._replay is not None else ""

    def replayed(self, text: str, reasoning_chars: int = 0) -> None:
        """Count a replayed step's text and reasoning, which the record holds, as streamed again."""
        if self._replay is not None:
            self._replay.skip(EventType.MESSAGE_DELTA, len(text))
            self._replay.skip(EventType.REASONING_DELTA, reasoning_chars)

    def skip_steers(self, calls: int) -> None:
        """The agent's own saved state (a LangGraph thread's checkpoints) holds what its first
        `calls` looks for steers took in: a replay does not give those again."""
        self._step_names[STEERS_STEP] = max(self._step_names[STEERS_STEP], calls)

    def skip_recorded(self) -> None:
        """Count everything the record holds as streamed: for an agent that goes on from its last
        step (`continues(..., redoes_after_last_step=True)`) and streams only what follows it."""
        self._not_replayed.clear()
        if self._replay is not None:
            self._replay.skip_all()

    async def restart_resumed_text(self, text: str) -> None:
        """The model could not continue `text`, which `resume_text()` gave (the end of the answer
        clients kept): clients drop it (a `run.continued` keeping the run's events up to before it),
        and the turn starts over."""
        replay = self._replay
        if replay is None or not text:
            return
        before, _ = replay.log.cut(len(replay.text) - len(text))
        self._kept_text = self._kept_text[: len(self._kept_text) - len(text)]
        await self.writer.emit(RunContinued(run_id=self._run_id, attempt=self._number, from_event_id=before))

    @property
    def output(self) -> str:
        """The run's answer: the text clients kept from before this attempt, then what it streamed."""
        return self._kept_text + self.writer.text

    @property
    def answered(self) -> bool:
        """Whether the run has shown something as its answer: text, a tool call or a data event
        (worker/run/job.py says so in the stream when it ends without any)."""
        return self._answered_before or self.writer.answered

    def open_tool_calls(self) -> list[tuple[str, str | None]]:
        """The tool calls started and not finished, (call id, agent) each: those the agent left open
        if it raised, for the run to end with `tool.failed` (`RunContext.tool_finished`)."""
        return [(call_id, agent) for call_id, (_, agent) in self.open_calls.items()]
