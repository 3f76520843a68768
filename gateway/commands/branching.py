"""Conversations that branch: a fork of a session after one of its turns, and where a client's
conversation leaves the session's.

A branch is a session of its own (a fork), made from the session's events up to a turn boundary:
the same ids and data, ids going on from there, the source untouched; so whatever holds for a
session holds for it. It is made from `POST /v1/sessions/{id}/fork`, from a Responses API request
whose `previous_response_id` names a response before its conversation's latest, and from a chat UI
whose message list shows a regenerated or edited turn (`branch_point`); a chat then goes on in the
fork (its pointer: `SessionKeys.branch`).

Whichever makes it, a fork costs its tenant what `fork_session` works out, before anything is written:
one of its runs per minute (a fork is a session made; a fork made for a new message is one with the
run queued in it, as a session made with its first run is) and the bytes it copies, of its hour's
bound (`RunBudget.spend_fork`). A fork refused for either makes nothing.
"""

import time
from dataclasses import dataclass, field

from tokentail.gateway.access.ids import new_session_id
from tokentail.gateway.access.limits import RunBudget
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import ForkSource, SessionStore
from tokentail.shared.store.scripts.sessions import session_fields
from tokentail.shared.vocabulary.errors import InputTooLarge, InvalidInput
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
    if after > settings.stream_maxlen:
        bound = "events (the stream's bound)"
        raise InputTooLarge(settings.stream_maxlen, what=f"a fork after event {after}", unit=bound)
    source = await store.fork_source(session_id, after)
    if source is None:
        await store.get_session(session_id)  # 404, 410
        raise InvalidInput(f"session {session_id!r} is kept only in the archive now: a fork copies from Redis")
    session = source.session
    _check_boundary(session, after)
    events = source.events
    if len(events) != after or (events and events[0].seq != 1):
        first = events[0].seq if events else None
        raise InvalidInput(
            f"session {session_id!r} no longer holds its events 1..{after} (its stream starts at {first}: "
            "trimmed past its retention): too long to fork"
        )
    fork = session.model_copy(
        update={
            "session_id": fork_id or new_session_id(),
            "created_at": time.time(),
            "last_event_id": after,
            "active_run_id": None,
            "runs": [run for run in session.runs if run.finished_seq is not None and run.finished_seq <= after],
            "lineage": session.lineage_after(after),
        }
    )
    copied = copied_bytes(fork, source)
    largest = min(MAX_FORK_BYTES, settings.fork_bytes_per_hour or MAX_FORK_BYTES)
    if copied > largest:  # past the hour's bound, it could never be made: not a 429 to try again
        raise InputTooLarge(largest, what=f"a fork after event {after} ({copied} bytes)", unit="bytes (a fork's copy)")
    await budget.spend_fork(session.tenant, copied, queues=for_a_run)
    await runs.fork(fork, source)  # or made before, under the same idempotency key
    return await store.get_session(fork.session_id)


def copied_bytes(fork: SessionRecord, source: ForkSource) -> int:
    """What making `fork` copies into Redis, in bytes: its record's fields, the runs it keeps as they
    are stored (their outputs with them), and its events' types and data. A fork is bounded and
    charged by it."""
    fields = sum(len(item.encode()) for item in session_fields(fork))
    records = sum(len(source.runs[run.run_id].encode()) for run in fork.runs)
    return fields + records + sum(len(event.type) + len(event.data) for event in source.events)


def _check_boundary(session: SessionRecord, after: int) -> None:
    if after > session.last_event_id:
        raise InvalidInput(f"after: the session's last event is {session.last_event_id}, not {after}")
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
