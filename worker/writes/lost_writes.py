"""Writes Redis lost: what a run's worker appended lately, to append again what Redis lost.

Redis acknowledges a write before its replica has it. A failover to a replica a moment behind (a
Sentinel promotion, a Redis Cluster failover) or a restart that lost the last writes takes back
the last events a run appended, though its followers may have read them: appending on would give
the next events the ids of the lost ones, and followers that had the lost ones would skip the new.
So each append tells Redis the last seq its worker was told it wrote (`expect`); a session below it
answers LOST (lib/seqs.lua's check_holder), and the worker appends the lost events again, as they were,
under the same ids (`through_lost_writes`), before going on.

The journal keeps the appends of the last `JOURNAL_BYTES` of event data: a replica's lag is
milliseconds of a run's output. Lost events that are not all in it (older, or appended by someone
else, such as the gateway's `run.queued` for a run in line) cannot be written again as they were:
the worker then hands the run over past them (the session's seq moved up to `written`, so no id a
follower may have read is given out again with other content: readers find a hole, announced as a
`gap`) and stops as if it had lost its lease; the next attempt goes on after them.
"""

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, NoReturn, Protocol, TypeVar

from tokentail.shared.plumbing.logs import log_context
from tokentail.shared.store.scripts.runs import Requeue
from tokentail.shared.vocabulary.errors import LeaseLost, WritesLost

logger = logging.getLogger(__name__)
T = TypeVar("T")

JOURNAL_BYTES = 64 * 1024


class Appended(NamedTuple):
    events: Sequence[tuple[str, str]]  # (type, data_json)
    last: int  # the seq of its last event

    @property
    def first(self) -> int:
        return self.last - len(self.events) + 1


class WriteJournal:
    __slots__ = ("written", "_appends", "_bytes")

    def __init__(self) -> None:
        self.written = 0  # the last seq an append of this run was told it wrote: Redis may not be below it
        self._appends: deque[tuple[Appended, int]] = deque()
        self._bytes = 0

    def wrote(self, events: Sequence[tuple[str, str]], last: int) -> None:
        size = len(events[0][1]) if len(events) == 1 else sum(len(data) for _, data in events)
        self._appends.append((Appended(events, last), size))
        self._bytes += size
        while self._bytes > JOURNAL_BYTES and len(self._appends) > 1:
            self._bytes -= self._appends.popleft()[1]
        self.written = max(self.written, last)

    def lost(self, last_seq: int) -> list[Appended] | None:
        """The appends to write again, in order, for a session whose last seq is now `last_seq`; None if
        the events after it are not all in the journal."""
        appends = [append for append, _ in self._appends if append.last > last_seq]
        if not appends or appends[0].first != last_seq + 1:
            return None
        if any(earlier.last + 1 != later.first for earlier, later in zip(appends, appends[1:], strict=False)):
            return None  # someone else's events between two of ours
        return appends


class JournaledLease(Protocol):
    """What appending again needs of a run's lease (worker/writes/run_writes.py's `RunLease`): its journal,
    an append under given ids, and the hand-over past what it cannot append again."""

    @property
    def session_id(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def journal(self) -> WriteJournal: ...

    async def append_as_written(self, append: Appended) -> int: ...

    async def hand_over(self, past_seq: int | None = None) -> Requeue: ...


async def through_lost_writes(lease: JournaledLease, write: Callable[[], Awaitable[T]]) -> T:
    """`write()`, a write of the run's worker; if Redis lost events the run wrote before (LOST),
    those first, appended again under their ids, then `write()` again."""
    while True:
        try:
            return await write()
        except WritesLost as lost:
            await _append_again(lease, lost.last_seq)


async def _append_again(lease: JournaledLease, last_seq: int) -> None:
    """Append again, under their ids, the run's events after `last_seq` that Redis lost; if it
    cannot as they were, hand the run over past them and stop (LeaseLost)."""
    lost = lease.journal.lost(last_seq)
    if lost is None:
        await _hand_over_past_lost(lease)
    for append in lost or ():
        if await lease.append_as_written(append) != append.last:
            await _hand_over_past_lost(lease)  # someone appended meanwhile: the ids cannot be the same
    with log_context(session_id=lease.session_id, run_id=lease.run_id):  # called back in any run's context
        logger.warning("appended again the %d events Redis lost", lease.journal.written - last_seq)


class HandedOver(LeaseLost):
    """The run is another worker's now because this one handed it over: unlike a lease lost to a
    reaper, its attempt ended here, and its span with it (worker/run/traces.py)."""


async def _hand_over_past_lost(lease: JournaledLease) -> NoReturn:
    """Events lost that the run cannot append again as they were: followers may have read them, so
    the run goes on after them (requeue_run.lua), in another attempt, and this one stops."""
    handed = await lease.hand_over(past_seq=lease.journal.written)
    with log_context(session_id=lease.session_id, run_id=lease.run_id):
        logger.warning(
            "Redis lost events the run cannot append again as they were: it goes on after %d (%s)",
            lease.journal.written,
            handed,
        )
    raise HandedOver(f"Redis lost events of run {lease.run_id} that its worker cannot append again as they were")
