"""Conversations that branch: a fork of a session after one of its turns or at any of its events, and
where a client's conversation leaves the session's.

A branch is a session of its own (a fork), made from the session's events up to a turn boundary:
the same ids and data, ids going on from there, the source untouched; so whatever holds for a
session holds for it. It is made from `POST /v1/sessions/{id}/fork`, from a Responses API request
whose `previous_response_id` names a response before its conversation's latest, and from a chat UI
whose message list shows a regenerated or edited turn (`branch_point`); a chat then goes on in the
fork (its pointer: `SessionKeys.branch`).

A fork at an event inside a run (`fork_at`: time travel) copies the events up to it too, and the run
goes on in the fork from there as a run taken over there would (worker/run/recovery/takeover.py): the
steps it had recorded by then (model turns, tool results: record_step.lua keeps each one's event id,
lib/runs.lua's end_run keeps a run's steps after it ends) are replayed, never done again; what it had
streamed by then is what its answer goes on from. Its first start is `run.started` with
`reason: "fork"` and `from_event_id` (clients drop what followed it, as after `run.continued`).

Whichever makes it, a fork costs its tenant what `_make` works out, before anything is written:
one of its runs per minute (a fork is a session made; a fork made for a new message is one with the
run queued in it, as a session made with its first run is) and the bytes it copies, of its hour's
bound (`RunBudget.spend_fork`). A fork refused for either makes nothing.
"""

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from tokentail.gateway.access.ids import new_session_id
from tokentail.gateway.access.limits import RunBudget
from tokentail.gateway.commands.writes import ForkedChild, ForkedRun, SessionWrites
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import lane_in
from tokentail.shared.store.reads import (
    ForkSource,
    SessionStore,
    StoredEvent,
    as_kept,
    decode_run,
    kept_steps,
    lane_steps,
    recorded_steps,
    steps_hash_of,
)
from tokentail.shared.store.scripts.runs import encode_run
from tokentail.shared.store.scripts.sessions import session_fields
from tokentail.shared.vocabulary.errors import InputTooLarge, InvalidInput
from tokentail.shared.vocabulary.events import TERMINAL_EVENTS, EventType
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord

# What one fork may copy (`copied_bytes`): it is one script's arguments.
MAX_FORK_BYTES = 32 * 1024 * 1024


async def fork_session(
    store: SessionStore,
    runs: SessionWrites,
    settings: Settings,
    budget: RunBudget,
    session_id: str,
    after: int,
    fork_id: str | None = None,
    *,
    for_a_run: bool = True,
) -> SessionRecord:
    """A new session holding `session_id`'s events 1..`after` (a turn boundary: 0, or the terminal
    event of a run with no other run going then), its record and the runs ended by then; as
    `GET /v1/sessions/{id}` reads it. `fork_id`: the fork's id (from an idempotency key: a fork made
    before under it is answered as it is), else a new one.

    What it copies (`copied_bytes`) is spent from its tenant's `budget` before anything is written
    (`RateLimited`, `ForkBytesLimited`: nothing made), with the request's one run of the minute, so a
    caller that queues a run in the fork spends no other; and, `for_a_run` (a branch made for the
    run queued next in it), it needs room in its tenant's line (`QueuedRunLimit`). One that copies more
    than one fork may is `InputTooLarge`."""
    source = await _source(store, settings, session_id, after, "after")
    _check_boundary(source.session, after)
    return await _make(store, runs, settings, budget, source, after, fork_id, None, queues=for_a_run)


@dataclass(frozen=True)
class Overrides:
    """What a fork inside a run changes for what the run does from there on (None: as it was)."""

    agent: str | None = None
    model: str | None = None
    params: dict[str, Any] | None = None
    instructions: str | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.agent, self.model, self.params, self.instructions))


async def fork_at(
    store: SessionStore,
    runs: SessionWrites,
    settings: Settings,
    budget: RunBudget,
    session_id: str,
    at: int,
    *,
    go_on: bool | None = None,
    overrides: Overrides = Overrides(),
    fork_id: str | None = None,
) -> SessionRecord:
    """A new session holding `session_id`'s events 1..`at`, any of its events (time travel). At a
    turn's end it is `fork_session`'s fork. Inside a run, the run goes on in the fork from `at` (`go_on`,
    the default there) with `overrides`, replaying what it recorded by then; or (`go_on` False) it
    ends there, and the fork holds its events. Spent and bounded as `fork_session`'s, with the run's
    place in its tenant's line when it goes on."""
    source = await _source(store, settings, session_id, at, "at")
    session = source.session
    run = session.run_shown_at(at)
    if run is None:  # a turn's end
        if go_on:
            raise InvalidInput(f"at: no run is going at event {at} (a turn's end): there is nothing to continue")
        if overrides:
            raise InvalidInput(f"at: no run is going at event {at}: agent, model, params and instructions change a run")
        return await _make(store, runs, settings, budget, source, at, fork_id, None, queues=False)
    fork_id = fork_id or new_session_id()
    going = await _going_on(store, source, run, at, go_on is not False, overrides, fork_id)
    return await _make(store, runs, settings, budget, source, at, fork_id, going, queues=going.go_on)


async def last_step_of(store: SessionStore, session: SessionRecord, run: RunRecord) -> int:
    """Where a re-run of `run` forks (the console's): the event after its last recorded step, so that a
    fork there replays every step it recorded and does again what followed; its first event (its
    queue) if it recorded none. Within the run: before its end."""
    last = (run.finished_seq or session.last_event_id + 1) - 1
    steps = await kept_steps(store.redis, store.keys.session(session.session_id), [run.run_id])
    seqs = [step.seq for step in recorded_steps(steps[run.run_id] or {}).values() if step.seq is not None]
    return min(last, max(seqs) + 1) if seqs else (run.queued_seq or last)


async def _source(store: SessionStore, settings: Settings, session_id: str, at: int, name: str) -> ForkSource:
    """What a fork at `at` (the request's `name`) copies, read at one instant: all of the events
    1..`at`, or a clear error."""
    if at > settings.stream_maxlen:
        bound = "events (the stream's bound)"
        raise InputTooLarge(settings.stream_maxlen, what=f"a fork at event {at}", unit=bound)
    source = await store.fork_source(session_id, at)
    if source is None:
        await store.get_session(session_id)  # 404, 410
        raise InvalidInput(f"session {session_id!r} is kept only in the archive now: a fork copies from Redis")
    if at > source.session.last_event_id:
        raise InvalidInput(f"{name}: the session's last event is {source.session.last_event_id}, not {at}")
    events = source.events
    if len(events) != at or (events and events[0].seq != 1):
        first = events[0].seq if events else None
        raise InvalidInput(
            f"session {session_id!r} no longer holds its events 1..{at} (its stream starts at {first}: "
            "trimmed past its retention): too long to fork"
        )
    return source


async def _going_on(
    store: SessionStore, source: ForkSource, run: RunRecord, at: int, go_on: bool, overrides: Overrides, fork_id: str
) -> ForkedRun:
    """`run`, going at event `at`, as fork `fork_id` holds it: its record as it stood then (what came after,
    taken back), with the steps it had recorded by then, its tree's runs going then (each in its lane in
    the fork, as it stood, with its steps), and the runs in line behind it."""
    session = source.session
    seen = _ids_by_type(source.events)
    ended = set().union(*(seen.get(kind.value, set()) for kind in TERMINAL_EVENTS))
    spawned = seen.get(EventType.RUN_SPAWNED.value, set())  # (in the order of the records: parents first)
    children = [child for child in session.runs if child.run_id in spawned and child.run_id not in ended]
    steps = await _steps_at(store, source, [run, *children])
    stood = _as_it_stood(decode_run(source.runs[run.run_id]), seen, overrides)
    pending = [
        RunRecord(
            run_id=waiting.run_id,
            input=waiting.input,
            model=waiting.model,
            params=waiting.params,
            agent=waiting.agent,
            instructions=waiting.instructions,
            user=waiting.user,
            queued_seq=waiting.queued_seq,
            queued_at=waiting.queued_at,
        )
        for waiting in session.runs
        if waiting.run_id != run.run_id
        and waiting.parent_run_id is None
        and waiting.queued_seq is not None
        and waiting.queued_seq <= at
        and (waiting.finished_seq is None or waiting.finished_seq > at)
    ]
    going = [
        ForkedChild(
            _as_it_stood(child, seen, Overrides()).model_copy(update={"lane": lane_in(child.lane or "", fork_id)}),
            _steps_by(steps[child.run_id], at, child.run_id),
        )
        for child in children
    ]
    return ForkedRun(stood, at, go_on, _steps_by(steps[run.run_id], at, run.run_id), pending, going)


async def _steps_at(store: SessionStore, source: ForkSource, runs: list[RunRecord]) -> dict[str, dict[bytes, bytes]]:
    """The steps hash of each of `runs` (a run going at the fork's event, and its tree's runs going then):
    kept, if it has ended since; else its lane's as it is (the session's active run's, as read with the
    records). A run that ended with none kept (before steps were kept for forks) cannot go on."""
    keys = store.keys.session(source.session.session_id)
    kept = await kept_steps(store.redis, keys, [run.run_id for run in runs])
    lanes = [run for run in runs if kept[run.run_id] is None and run.lane is not None]
    hashes = await lane_steps(store.redis, [store.keys.session(run.lane or "") for run in lanes])
    found = {run.run_id: steps for run, steps in zip(lanes, hashes, strict=True)}
    steps: dict[str, dict[bytes, bytes]] = {}
    for run in runs:
        steps[run.run_id] = kept[run.run_id] or found.get(run.run_id) or {}
        if kept[run.run_id] is None and run.run_id == source.session.active_run_id:
            steps[run.run_id] = source.steps
        elif kept[run.run_id] is None and run.finished_seq is not None and run.started_seq is not None:
            raise InvalidInput(
                f"at: run {run.run_id}'s recorded steps are no longer kept (it ended before steps were kept for "
                "forks): fork after a turn instead, or with continue: false"
            )
    return steps


def _ids_by_type(events: list[StoredEvent]) -> dict[str, set[str]]:
    """Of the run, input and steer events among `events`: the ids they carry (a question's, a steer's,
    else the run's), by event type."""
    seen: dict[str, set[str]] = {}
    for event in events:
        if event.type.startswith((b"input.", b"steer.", b"run.")):
            kind = event.type.decode()
            seen.setdefault(kind, set()).add(json.loads(event.data).get(_ID_OF.get(kind, "run_id"), ""))
    return seen


_ID_OF = {"input.required": "input_id", "input.received": "input_id", "steer.applied": "steer_id"}


def _as_it_stood(run: RunRecord, seen: dict[str, set[str]], overrides: Overrides) -> RunRecord:
    """`run`'s record as it stood when the events whose ids `seen` holds were its last, queued to go
    on from there: what it asked, was answered, took in and spawned by then; nothing of its end."""
    return run.model_copy(
        update={
            "status": "queued",
            "attempt": 0,
            "handovers": 0,
            "started_as": None,
            "started_seq": None,
            "started_at": None,
            "finished_seq": None,
            "finished_at": None,
            "output": None,
            "usage": None,
            "error": None,
            "reason": None,
            "asked": [question for question in run.asked if question.input_id in seen.get("input.required", ())],
            "answers": {key: value for key, value in run.answers.items() if key in seen.get("input.received", ())},
            "waiting_for": [],
            "waiting_until": None,
            "resumes": 0,
            "steers": [steer for steer in run.steers if steer.steer_id in seen.get("steer.applied", ())],
            "children": [child for child in run.children if child in seen.get("run.spawned", ())],
            "awaiting": [],
            "trace": {},
            **{name: value for name, value in vars(overrides).items() if value is not None},
        }
    )


def _steps_by(steps_hash: dict[bytes, bytes], at: int, run_id: str) -> list[str]:
    """Of a run's steps hash (record_step.lua), the steps recorded by event `at`, as the fork's steps
    hash holds them, name, value pairs: with their seqs, the last as `seq`, and their total size as
    `bytes`. A step's seq is the last event before it: one of seq `at` came after event `at` (a tool's
    result is recorded before its `tool.completed`, which then has the next id), so a fork at `at`
    keeps the steps of seqs before it, and does again what clients had not seen the end of by then."""
    steps = recorded_steps(steps_hash)
    if any(step.seq is None for step in steps.values()):
        raise InvalidInput(
            f"at: run {run_id} recorded steps before their places were kept: it can be forked after a turn, "
            "or with continue: false"
        )
    return steps_hash_of({key: step for key, step in steps.items() if step.seq is not None and step.seq < at})


async def _make(
    store: SessionStore,
    runs: SessionWrites,
    settings: Settings,
    budget: RunBudget,
    source: ForkSource,
    at: int,
    fork_id: str | None,
    going: ForkedRun | None,
    *,
    queues: bool,
) -> SessionRecord:
    """Make the fork of `source` at `at` (with `going`, the run going then), spent from its tenant's
    budget first; as `GET /v1/sessions/{id}` reads it."""
    session = source.session
    ended = [run for run in session.runs if run.finished_seq is not None and run.finished_seq <= at]
    in_fork = [going.run, *(child.run for child in going.children), *going.pending] if going is not None else []
    held = [*ended, *in_fork]
    fork = session.model_copy(
        update={
            "session_id": fork_id or new_session_id(),
            "created_at": time.time(),
            "last_event_id": at,
            "active_run_id": None,
            "runs": held,
            "lineage": session.lineage_after(at),
        }
    )
    records = {run.run_id: source.runs[run.run_id] for run in ended}
    records |= {run.run_id: encode_run(run) for run in in_fork}
    kept = await kept_steps(store.redis, store.keys.session(session.session_id), [run.run_id for run in ended])
    kept_copies = {run_id: as_kept(steps) for run_id, steps in kept.items() if steps is not None}
    copied = copied_bytes(fork, source, records, kept_copies, going)
    largest = min(MAX_FORK_BYTES, settings.fork_bytes_per_hour or MAX_FORK_BYTES)
    if copied > largest:  # past the hour's bound, it could never be made: not a 429 to try again
        raise InputTooLarge(largest, what=f"a fork at event {at} ({copied} bytes)", unit="bytes (a fork's copy)")
    await budget.spend_fork(session.tenant, copied, queues=queues)
    job_id = f"{going.run.run_id}.{secrets.token_hex(4)}" if going is not None else ""
    await runs.fork(fork, source, records, kept_copies, going, job_id)  # or made before, under the same key
    return await store.get_session(fork.session_id)


def copied_bytes(
    fork: SessionRecord,
    source: ForkSource,
    records: dict[str, str],
    kept_steps: dict[str, str],
    going: ForkedRun | None,
) -> int:
    """What making `fork` copies into Redis, in bytes: its record's fields, the runs it keeps as they
    are stored (their outputs with them) and their kept steps, its events' types and data, and the
    steps of the run that goes on. A fork is bounded and charged by it."""
    fields = sum(len(item.encode()) for item in session_fields(fork))
    stored = sum(len(record.encode()) for record in records.values())
    going_steps = [*going.steps, *(step for child in going.children for step in child.steps)] if going else []
    steps = sum(len(item.encode()) for item in [*kept_steps.values(), *going_steps])
    return fields + stored + steps + sum(len(event.type) + len(event.data) for event in source.events)


def _check_boundary(session: SessionRecord, after: int) -> None:
    boundaries = session.turn_boundaries()
    if after in boundaries:
        return
    before = max(b for b in boundaries if b < after)
    later = [b for b in boundaries if b > after]
    going = session.run_shown_at(after)
    where = f"run {going.run_id} is going at event {after}" if going is not None else f"{after} is inside a turn"
    nearest = f"{before}" + (f" and {later[0]}" if later else "")
    raise InvalidInput(
        f"after: {where}; a fork is made after a turn (0, or a run's terminal event with no other run going): "
        f"the nearest are {nearest}"
    )


async def fork_after_run(
    store: SessionStore,
    runs: SessionWrites,
    settings: Settings,
    budget: RunBudget,
    session: SessionRecord,
    run: RunRecord,
) -> SessionRecord:
    """A fork of `session` after `run` ended: the conversation up to that turn, to go on from there."""
    if run.finished_seq is None:
        raise InvalidInput(f"run {run.run_id} has not ended: a conversation branches after a turn that ended")
    return await fork_session(store, runs, settings, budget, session.session_id, run.finished_seq)


# -- where a chat UI's message list leaves the session ------------------------------------------------


@dataclass(frozen=True)
class Said:
    """A turn as a client shows it: the user's text and, if the client knows it, the id of the answer
    it shows after it (a run id: useChat's assistant message ids are)."""

    text: str
    answer_id: str | None = None


@dataclass(frozen=True)
class ClientChat:
    """What a chat UI sends with a new message: the turns it shows before it (its whole message list,
    as both protocols send it), the message, and how it came (useChat's `trigger` and `messageId`)."""

    text: str
    history: list[Said] = field(default_factory=list)
    regenerate: bool = False  # useChat's regenerate(): the last user message asked again
    edited: str | None = None  # the id of the user message an edit replaced (useChat's `messageId`)


def branch_point(chat: ClientChat, session: SessionRecord) -> int | None:
    """Where the client's conversation leaves the session's: the event id after which its new message
    goes, in a fork of the session (0: before the first turn); None when it goes on from the
    session's latest turn.

    The client's turns are compared with the session's runs, in order: a turn agrees with a run when
    its text is the run's input and its answer, if the client names it, is that run. The new message
    follows the turns that agree: if a run that ended comes after them (`regenerate()` drops the last
    answer; an edit replaces an earlier message), the conversation branches there. Runs still going
    that the client does not show (sent from another tab) are not a branch: the message waits in line
    behind them, as before. A list with no earlier turn says nothing of them (a client that sends only
    its last message), unless useChat says it is a regenerate (the latest turn of that text, asked
    again) or an edit (of the turn whose message id it names, else of the first)."""
    runs = session.runs
    if chat.history:
        # The session's user turns: each run's input, then the steers it took in (a chat that steers:
        # TOKENTAIL_CHAT_WHILE_RUNNING), each with its run's index. A turn that disagrees within a
        # run's steers leaves the run agreed on: its steers are its own.
        turns = [
            (text, index, is_input)
            for index, run in enumerate(runs)
            for text, is_input in [(run.input, True), *((steer.text, False) for steer in run.steers)]
        ]
        agreed = len(runs)
        for position, (text, index, is_input) in enumerate(turns):
            said = chat.history[position] if position < len(chat.history) else None
            answer_id = said.answer_id if said is not None else None
            if said is None or said.text != text or (is_input and answer_id not in (None, runs[index].run_id)):
                agreed = index if is_input else index + 1
                break
    elif chat.regenerate:
        asked = [index for index, run in enumerate(runs) if run.input == chat.text and not run.active]
        if not asked:
            return None
        agreed = asked[-1]
    elif chat.edited is not None:
        agreed = next((index for index, run in enumerate(runs) if f"{run.run_id}-input" == chat.edited), 0)
    else:
        return None
    if all(run.active for run in runs[agreed:]):
        return None  # nothing ended after the turns agreed on: the message goes on from them
    if agreed == 0:
        return 0
    return runs[agreed - 1].finished_seq
