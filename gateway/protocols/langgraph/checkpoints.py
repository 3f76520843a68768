"""LangGraph's checkpoints, tokentail's way: a checkpoint is an event of the thread at a step boundary,
where a LangGraph graph (an agent node, then a tools node, in a loop) would write one. `step_boundaries`
is the one rule:

    0                           the thread before its first run (`source: "input"`, next `__start__`)
    a run's first `run.started` its input taken in (`source: "input"`, next `agent`)
    a batch's last `tool.started`  the model turn that called those tools (next `tools`): the calls
                                started before the first of their results
    the result that ends a batch  (`tool.completed` / `tool.failed`, no call of the run left open): the
                                tools node done (next `agent`)
    a run's terminal event      its end (next nothing)
    the session's last event    now

Of the thread's own runs only (a child run's events are its parent's tool call). A checkpoint's id is
the event's (state.py `checkpoint_name`): a run created from one forks the thread there
(gateway/commands/branching.py: `fork_session` at a run's end, `fork_at` inside a run, whose steps are
replayed), and the thread goes on in that branch. The history lists the checkpoints of every branch
the thread went on in (shared/store/client_indexes.py `chat_branches`), each `parent_checkpoint` the
one before it in its branch, so a client's branch tree (useStream's `getBranchSequence`) forks where
they part.
"""

import copy
import json
from dataclasses import dataclass
from typing import Any, Literal

from tokentail.gateway.commands.turns import ChatTurns
from tokentail.gateway.protocols.langgraph.state import (
    Conversation,
    checkpoint,
    checkpoint_name,
    iso,
    shown_runs,
    values_of,
)
from tokentail.gateway.protocols.langgraph.threads import read_thread, state_json
from tokentail.gateway.reading.feed import parse_last_event_id
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.store.client_indexes import chat_branch, chat_branches
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.errors import InvalidInput, InvalidLastEventId, SessionNotFound
from tokentail.shared.vocabulary.events import TERMINAL_EVENTS, EventType
from tokentail.shared.vocabulary.records import SessionRecord

_WATCHED = {EventType.RUN_STARTED, EventType.TOOL_STARTED, EventType.TOOL_COMPLETED, EventType.TOOL_FAILED}
_WATCHED |= TERMINAL_EVENTS
_WATCHED_BYTES = {kind.value.encode() for kind in _WATCHED}


@dataclass(frozen=True)
class Boundary:
    """A step boundary: event `seq`, in run `run_id` (None: before any), what runs next, and LangGraph's
    `source` of the checkpoint there."""

    seq: int
    run_id: str | None
    next: tuple[str, ...]
    source: Literal["input", "loop"]


def step_boundaries(session: SessionRecord, events: list[StoredEvent]) -> list[Boundary]:
    """The session's step boundaries, oldest first (the module's table), now the last."""
    shown = {run.run_id for run in shown_runs(session)}
    found = [Boundary(0, None, ("__start__",), "input")]
    started: set[str] = set()
    open_calls: dict[str, set[str]] = {}  # per run, its calls started with no result yet
    calling: dict[str, int] = {}  # per run, its last tool.started before a result
    for event in events:
        if event.type not in _WATCHED_BYTES:
            continue
        kind, data = EventType(event.type.decode()), json.loads(event.data)
        run_id = data["run_id"]
        if run_id not in shown or data.get("parent_run_id"):
            continue
        if kind == EventType.RUN_STARTED and run_id not in started:
            started.add(run_id)
            found.append(Boundary(event.seq, run_id, ("agent",), "input"))
        elif kind == EventType.TOOL_STARTED:
            open_calls.setdefault(run_id, set()).add(data["call_id"])
            calling[run_id] = event.seq
        elif kind in (EventType.TOOL_COMPLETED, EventType.TOOL_FAILED):
            if run_id in calling:
                found.append(Boundary(calling.pop(run_id), run_id, ("tools",), "loop"))
            calls = open_calls.setdefault(run_id, set())
            calls.discard(data["call_id"])
            if not calls:
                found.append(Boundary(event.seq, run_id, ("agent",), "loop"))
        elif kind in TERMINAL_EVENTS:
            calling.pop(run_id, None)
            open_calls.pop(run_id, None)
            found.append(Boundary(event.seq, run_id, (), "loop"))
    if found[-1].seq != session.last_event_id:
        going = session.run_shown_at(session.last_event_id)
        found.append(Boundary(session.last_event_id, going.run_id if going else None, ("agent",), "loop"))
    return found


def session_states(
    thread_id: str, session: SessionRecord, events: list[StoredEvent]
) -> list[tuple[int, dict[str, Any]]]:
    """The state at each of the session's step boundaries, oldest first, each with the time of its
    event (µs; 0 before any), its `parent_checkpoint` the one before it."""
    boundaries = step_boundaries(session, events)
    wanted = {boundary.seq for boundary in boundaries}
    reducer, conversation = Reducer(), Conversation()
    values: dict[int, tuple[int, dict[str, Any]]] = {0: (0, {"messages": []})}
    for event in events:
        for operation in reducer.reduce(event):
            conversation.apply(operation)
        if event.seq in wanted:  # (a copy: a message's text grows in place as the session goes on)
            runs = shown_runs(session, before=event.seq + 1)
            values[event.seq] = (event.ts_us, copy.deepcopy(values_of(conversation, runs)))
    states: list[tuple[int, dict[str, Any]]] = []
    for step, boundary in enumerate(boundaries):
        at, shown = values.get(boundary.seq, (0, {"messages": []}))
        parent = states[-1][1]["checkpoint"] if states else None
        metadata: dict[str, Any] = {"source": boundary.source, "step": step - 1, "writes": None, "parents": {}}
        state = {
            "values": shown,
            "next": list(boundary.next),
            "tasks": [],
            "interrupts": [],
            "checkpoint": checkpoint(thread_id, checkpoint_name(session, boundary.seq)),
            "parent_checkpoint": parent,
            "metadata": {**session.metadata, "thread_id": thread_id, "run_id": boundary.run_id, **metadata},
            "created_at": iso(at / 1e6 if at else session.created_at),
        }
        states.append((at, state))
    return states


async def thread_sessions(turns: ChatTurns, thread_id: str) -> tuple[str, str, list[str]]:
    """The thread's own session (the chat's), the one it goes on in now, and every session of the
    thread: that one first, then its own and each branch it went on in."""
    root = await turns.auth.chat_root(turns.caller, thread_id, turns.store)
    store = turns.store
    current = await chat_branch(store.redis, store.keys, store.settings, root) or root
    return root, current, list(dict.fromkeys([current, root, *await chat_branches(store.redis, store.keys, root)]))


async def thread_history(turns: ChatTurns, thread_id: str) -> list[dict[str, Any]]:
    """The thread's states at its checkpoints, of every branch, newest first (on a tie, the branch it
    goes on in first); the latest is the thread's state now (`state_json`: its task, its interrupts)."""
    _, current, sessions = await thread_sessions(turns, thread_id)
    listed: dict[str, tuple[int, dict[str, Any]]] = {}
    for session_id in sessions:
        try:
            session, events = await read_thread(turns.store, session_id)
        except SessionNotFound:  # a branch expired or deleted
            continue
        states = session_states(thread_id, session, events)
        if session_id == current:
            now = state_json(thread_id, session, events)
            states[-1][1].update(next=now["next"], tasks=now["tasks"], interrupts=now["interrupts"])
        for at, state in states:
            listed.setdefault(state["checkpoint"]["checkpoint_id"], (at, state))
    return [state for _, state in sorted(listed.values(), key=lambda listing: -listing[0])]


def page(
    states: list[dict[str, Any]], limit: int, before: Any, metadata: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Of the states, newest first: those older than checkpoint `before` (an id, or a checkpoint), with
    `metadata`'s pairs, at most `limit` (LangGraph's `get_history` filters)."""
    named = before.get("checkpoint_id") if isinstance(before, dict) else before
    if named is not None:
        ids = [state["checkpoint"]["checkpoint_id"] for state in states]
        states = states[ids.index(named) + 1 :] if named in ids else []
    if metadata:
        states = [state for state in states if all(state["metadata"].get(k) == v for k, v in metadata.items())]
    return states[: max(limit, 0)]


async def resolve(turns: ChatTurns, thread_id: str, checkpoint_id: str) -> tuple[SessionRecord, int]:
    """The session and event a checkpoint id of the thread names (`checkpoint_name`): the branch that
    made the event, and its id. An id not of the thread's: `InvalidInput` (422)."""
    seq_text, _, made_in = checkpoint_id.partition("@")
    root, _, sessions = await thread_sessions(turns, thread_id)
    session_id = made_in or root  # (a bare event id: the chat's own session's)
    try:
        seq = parse_last_event_id(seq_text) if seq_text else -1
        if seq < 0 or session_id not in sessions:
            raise InvalidLastEventId(checkpoint_id)
        session = await turns.store.get_session(session_id)
        if seq > session.last_event_id:
            raise InvalidLastEventId(checkpoint_id)
    except (InvalidLastEventId, SessionNotFound):
        raise InvalidInput(
            f"checkpoint_id: {checkpoint_id!r} is not one of this thread's checkpoints (POST /threads/{{tid}}/history)"
        ) from None
    return session, seq
