"""One run's life on one time axis, from its record and its own events: queued and how long it waited,
each start (which worker, which attempt, why) and until when its worker held the run, takeovers (the
worker lost, `run.continued` and the event it continued from, or `run.retrying`), text (consecutive
deltas as one stage), tool calls with their durations, questions and answers, steers, children (from
their spawn to their end), usage and the ending; and the run's native events, a page at a time, as a
client saw them. Every time is the Redis time of the event's append."""

import json
from collections.abc import Callable, Sequence
from typing import Any

from tokentail.gateway.admin.models import Stage, Timeline, TimelineEvent
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore, StoredEvent
from tokentail.shared.vocabulary.events import EventType
from tokentail.shared.vocabulary.records import PUBLIC_TENANT, RunRecord, SessionRecord

# Events a gateway writes, not the run's worker: no sign that a worker held the run when they came.
NOT_THE_WORKERS = frozenset({EventType.RUN_QUEUED, EventType.INPUT_RECEIVED, EventType.STEER_ACCEPTED})
STAGE_EVENTS = 20_000  # of the session's events, what one timeline reads at most for its stages
READ_BATCH = 1_000
EVENTS_PAGE = 200
EVENTS_PAGE_MAX = 1_000


def _stage(at: float, kind: str, **fields: Any) -> Stage:
    return Stage.model_validate({"at": at, "kind": kind, **fields})


class Stages:
    """The stages of one run, built event by event."""

    def __init__(self, run: RunRecord, runs: Sequence[RunRecord] = ()) -> None:
        self.run = run
        self._ended_at = {other.run_id: other.finished_at for other in runs}  # (its children's ends)
        self.stages: list[Stage] = []
        # The start whose worker holds the run (its `until` still open), and when that worker was last
        # heard of (its own last event): a worker that dies, or gives the run up, holds it no longer.
        self._held: Stage | None = None
        self._heard: float | None = None
        self._starts = 0  # `run.started` and `run.continued` seen: each names the next of `run.workers`
        self._tools: dict[str, Stage] = {}
        self._steers: dict[str, Stage] = {}
        self._text: Stage | None = None  # the text stage that deltas extend, until another stage comes
        self._queued_stage: Stage | None = None  # its wait ends at the first start

    def add(self, seq: int, event_type: str, data: dict[str, Any], at: float) -> None:
        self._stage_of(seq, event_type, data, at)
        if event_type not in NOT_THE_WORKERS:
            self._heard = at  # (after the handlers: a takeover's event is no sign of the worker it lost)

    def _stage_of(self, seq: int, event_type: str, data: dict[str, Any], at: float) -> None:
        if event_type == EventType.MESSAGE_DELTA:
            if self._text is None:
                self._text = _stage(at, "text", event_id=seq, chars=0, until=at)
                self.stages.append(self._text)
            self._text.chars += len(data.get("text", ""))  # type: ignore[attr-defined]
            self._text.until = at  # type: ignore[attr-defined]
            return
        before = len(self.stages)
        self._other(seq, event_type, data, at)
        if len(self.stages) != before:
            self._text = None

    def _hold(self, start: Stage) -> None:
        self._let_go()
        self._held = start
        self._heard = start.at

    def _let_go(self, at: float | None = None) -> Stage | None:
        """The held start ends: at `at`, or when its worker was last heard of. Returns it."""
        held, self._held = self._held, None
        if held is not None:
            held.until = at if at is not None else self._heard  # type: ignore[attr-defined]
        return held

    def _lost(self, at: float) -> None:
        """A takeover at `at`: the worker before was lost after it was last heard of."""
        held = self._let_go()
        if held is not None:
            lost_at = held.until  # type: ignore[attr-defined]
            attempt, worker = held.attempt, held.worker  # type: ignore[attr-defined]
            self.stages.append(_stage(lost_at, "lost", attempt=attempt, worker=worker, taken_over_at=at))

    def finish(self) -> list[Stage]:
        """The stages, in time order, once every event is added: a run no longer running is held by none."""
        if self.run.status != "running":
            self._let_go()
        elif self._held is not None:
            self._held.until = None  # type: ignore[attr-defined]  # (held now: to the present moment)
        return sorted(self.stages, key=lambda stage: stage.at)

    def _worker(self) -> str | None:
        workers = self.run.workers
        worker = workers[self._starts] if self._starts < len(workers) else None
        self._starts += 1
        return worker

    def _other(self, seq: int, event_type: str, data: dict[str, Any], at: float) -> None:
        handler = self._handlers.get(event_type)
        if handler is not None:
            handler(self, seq, event_type, data, at)

    def _queued(self, seq: int, _: str, data: dict[str, Any], at: float) -> None:
        self._queued_stage = _stage(at, "queued", event_id=seq, place=None, wait_ms=None)
        self.stages.append(self._queued_stage)

    def _started(self, _: int, __: str, data: dict[str, Any], at: float) -> None:
        reason = data.get("reason", "start")
        if reason == "start" and self._queued_stage is not None and self._queued_stage.wait_ms is None:  # type: ignore[attr-defined]
            self._queued_stage.wait_ms = round((at - self._queued_stage.at) * 1000)  # type: ignore[attr-defined]
        if reason == "takeover":
            self._lost(at)  # (after `run.retrying`: already)
        if reason == "fork":  # its events before are its source's copy: its record lists its own starts only
            self._let_go(at)
            self._starts = 0
        self._start(at, data["attempt"], reason)
        if reason == "fork":
            self.stages.append(_stage(at, "continued", attempt=data["attempt"], from_event_id=data["from_event_id"]))

    def _start(self, at: float, attempt: int, reason: str) -> None:
        start = _stage(at, "started", attempt=attempt, reason=reason, worker=self._worker(), until=None)
        self.stages.append(start)
        self._hold(start)

    def _continued(self, _: int, __: str, data: dict[str, Any], at: float) -> None:
        # A takeover that goes on from the run's record has no `run.started`: its start is this event.
        attempt = data["attempt"]
        self._lost(at)
        self._start(at, attempt, "takeover")
        self.stages.append(_stage(at, "continued", attempt=attempt, from_event_id=data["from_event_id"]))

    def _retrying(self, _: int, __: str, data: dict[str, Any], at: float) -> None:
        self._lost(at)
        self.stages.append(_stage(at, "retrying", attempt=data["attempt"], reason=data["reason"]))

    def _tool_started(self, _: int, __: str, data: dict[str, Any], at: float) -> None:
        call_id = data["call_id"]
        tool = _stage(at, "tool", call_id=call_id, name=data["name"], status="running", duration_ms=None)
        self._tools[call_id] = tool
        self.stages.append(tool)

    def _tool_ended(self, _: int, event_type: str, data: dict[str, Any], __: float) -> None:
        if (tool := self._tools.get(data["call_id"])) is not None:
            tool.status = "completed" if event_type == EventType.TOOL_COMPLETED else "failed"  # type: ignore[attr-defined]
            tool.duration_ms = data.get("duration_ms")  # type: ignore[attr-defined]

    def _question(self, _: int, __: str, data: dict[str, Any], at: float) -> None:
        question = {"input_id": data["input_id"], "input_kind": data["kind"], "prompt": data["prompt"]}
        self.stages.append(_stage(at, "question", **question))
        self._let_go(at)  # the worker gives the run up to wait for the answer (ask.lua)

    def _answered(self, _: int, __: str, data: dict[str, Any], at: float) -> None:
        by = self.run.answered_by.get(data["input_id"], {})  # (none for an answer an expiry gave)
        stage = _stage(at, "answered", input_id=data["input_id"], by=by.get("who"), gateway=by.get("gateway"))
        self.stages.append(stage)

    def _steer(self, _: int, __: str, data: dict[str, Any], at: float) -> None:
        steer = _stage(at, "steer", steer_id=data["steer_id"], input=data["input"], applied=False)
        self._steers[data["steer_id"]] = steer
        self.stages.append(steer)

    def _steer_applied(self, _: int, __: str, data: dict[str, Any], ___: float) -> None:
        if (steer := self._steers.get(data["steer_id"])) is not None:
            steer.applied = True  # type: ignore[attr-defined]

    def _spawned(self, _: int, __: str, data: dict[str, Any], at: float) -> None:
        child = data["run_id"]
        until = self._ended_at.get(child)  # None while it goes
        self.stages.append(
            _stage(at, "spawned", child_run_id=child, agent=data["agent"], name=data["name"], until=until)
        )

    def _ended(self, _: int, event_type: str, data: dict[str, Any], at: float) -> None:
        if data.get("usage"):
            self.stages.append(_stage(at, "usage", usage=data["usage"]))
        error = data.get("error")
        status = event_type.removeprefix("run.")
        message = error.get("message") if isinstance(error, dict) else None
        self._let_go(at)
        self.stages.append(_stage(at, "ended", status=status, error=message, reason=data.get("reason")))

    _handlers: dict[str, Callable[["Stages", int, str, dict[str, Any], float], None]] = {
        EventType.RUN_QUEUED: _queued,
        EventType.RUN_STARTED: _started,
        EventType.RUN_CONTINUED: _continued,
        EventType.RUN_RETRYING: _retrying,
        EventType.TOOL_STARTED: _tool_started,
        EventType.TOOL_COMPLETED: _tool_ended,
        EventType.TOOL_FAILED: _tool_ended,
        EventType.INPUT_REQUIRED: _question,
        EventType.INPUT_RECEIVED: _answered,
        EventType.STEER_ACCEPTED: _steer,
        EventType.STEER_APPLIED: _steer_applied,
        EventType.RUN_SPAWNED: _spawned,
        EventType.RUN_COMPLETED: _ended,
        EventType.RUN_FAILED: _ended,
        EventType.RUN_CANCELLED: _ended,
    }


def _of_run(event: StoredEvent, run_id: str) -> dict[str, Any] | None:
    """The event's data if it is the run's own (or the spawn of one of its children)."""
    data: dict[str, Any] = json.loads(event.data)
    if data.get("run_id") == run_id or (
        event.type == EventType.RUN_SPAWNED.encode() and data.get("parent_run_id") == run_id
    ):
        return data
    return None


def _first_seq(run: RunRecord) -> int:
    seqs = [seq for seq in (run.queued_seq, run.started_seq) if seq is not None]
    return max(0, min(seqs) - 1) if seqs else 0


RunEvent = tuple[int, str, dict[str, Any], float]  # id, type, data, when (epoch seconds)


async def run_events(
    store: SessionStore, session_id: str, run: RunRecord, after: int, budget: int, want: int | None = None
) -> tuple[list[RunEvent], bool]:
    """The run's own events after `after`, reading at most `budget` of the session's events (children's
    interleave) and stopping at `want` found; and whether the budget ran out before the run's end."""
    found: list[RunEvent] = []
    position, last, read = after, run.finished_seq, 0
    while read < budget:
        batch = await store.read(session_id, position, min(READ_BATCH, budget - read))
        for event in batch:
            if last is not None and event.seq > last:
                return found, False
            if (data := _of_run(event, run.run_id)) is not None:
                found.append((event.seq, event.type.decode(), data, event.ts_us / 1e6))
                if len(found) == want:
                    return found, False
        if not batch:
            return found, False
        read += len(batch)
        position = batch[-1].seq
    return found, True


def _trace_id(run: RunRecord) -> str | None:
    parent = run.trace.get("traceparent", "")
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 else None


async def timeline(
    store: SessionStore, settings: Settings, session: SessionRecord, run: RunRecord, after: int | None, limit: int
) -> Timeline:
    """The run's stages (from its first STAGE_EVENTS events), and a page of `limit` of its events after
    `after` (from its first)."""
    session_id = session.session_id
    first = _first_seq(run)
    read, truncated = await run_events(store, session_id, run, first, STAGE_EVENTS)
    stages = Stages(run, session.runs)
    for seq, event_type, data, at in read:
        stages.add(seq, event_type, data, at)
    if after is None or after <= first:
        page = read[: limit + 1]
    else:
        page, _ = await run_events(store, session_id, run, after, STAGE_EVENTS, want=limit + 1)
    events = [TimelineEvent(id=seq, type=event_type, data=data, at=at) for seq, event_type, data, at in page[:limit]]
    trace_id = _trace_id(run)
    return Timeline(
        session_id=session_id,
        run_id=run.run_id,
        forked_from=session.forked_from,
        tenant=session.tenant or PUBLIC_TENANT,
        status=run.status,
        attempt=run.attempt,
        trace_id=trace_id,
        trace_url=settings.trace_url.format(trace_id=trace_id) if settings.trace_url and trace_id else None,
        stages=stages.finish(),
        truncated=truncated,
        events=events,
        next_after=events[-1].id if len(page) > limit else None,
    )
