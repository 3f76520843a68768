"""The end-to-end time to first token, as a user feels it: from the request that queued a run,
received by a gateway, to the first text delta of that run written to a client, on any gateway
(`metrics.FIRST_DELTA`, once per run).

`RECEIVED_AT` is stamped as a request comes in (`GatewayApp.__call__`), and `SessionWrites.queue_run`
keeps it in the run's record (`RunRecord.received_at`). A feed tells `FirstDeltas.written` of each run
whose delta it writes (once per run and feed); in each process a run is counted once, and across
gateways the first to tell Redis counts it (count_first_delta.lua, which also reads the run's record):
the runs a gateway wrote within `COUNT_EVERY_SECONDS` go to Redis together, in one round trip, in a
task of their own, never on the stream's path. The two times come from two gateways' clocks when the
run was queued on one and read on another.
"""

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar

from tokentail.gateway import metrics
from tokentail.shared.connections.outage import is_outage
from tokentail.shared.plumbing.run_spans import RunTrace
from tokentail.shared.store.reads import SessionStore, decode_run
from tokentail.shared.store.scripts.policies import sessions_runner
from tokentail.shared.store.scripts.sessions import CountFirstDelta, MetaRunsKeys

logger = logging.getLogger(__name__)

RECEIVED_AT: ContextVar[float | None] = ContextVar("tokentail_received_at", default=None)
DELTA = b"message.delta"
RUN_ID_HEAD = b'{"run_id":"'  # how every event's data starts (shared/vocabulary/events.py: EventData)
REMEMBERED = 10_000  # runs this process knows it counted (or saw counted): the newest
COUNT_EVERY_SECONDS = 0.05  # the runs a gateway wrote within this are told to Redis in one round trip


def head_of(run_id: str) -> bytes:
    """How the data of every event of run `run_id` starts."""
    return b'%s%s"' % (RUN_ID_HEAD, run_id.encode())


def run_id_of(data: bytes) -> str | None:
    """The run id an event's data starts with, without parsing the rest."""
    if not data.startswith(RUN_ID_HEAD):
        return None
    end = data.find(b'"', len(RUN_ID_HEAD))
    return data[len(RUN_ID_HEAD) : end].decode() if end > 0 else None


class FirstDeltas:
    """This gateway's part of the count: one per hub (`StreamHub.first_deltas`)."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._scripts = sessions_runner(store.redis, store.settings)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._waiting: list[tuple[str, str, float]] = []  # session, run, when written: to count
        self._due: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        """Nothing waits to be counted, and nothing is being counted."""
        return not self._waiting and not self._tasks

    def written(self, session_id: str, run_id: str) -> None:
        """A delta of `run_id` was just written to a client of this gateway."""
        if run_id in self._seen:
            return
        self._seen[run_id] = None
        if len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        self._waiting.append((session_id, run_id, time.time()))
        if self._due is None:
            self._due = asyncio.get_running_loop().call_later(COUNT_EVERY_SECONDS, self._count_waiting)

    def _count_waiting(self) -> None:
        self._due = None
        waiting, self._waiting = self._waiting, []
        task = asyncio.create_task(self._count_all(waiting))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _count_all(self, waiting: list[tuple[str, str, float]]) -> None:
        # Asked together: the round trips join them into one.
        await asyncio.gather(*(self._count(*run) for run in waiting))

    async def _count(self, session_id: str, run_id: str, written_at: float) -> None:
        k = self._store.keys.session(session_id)
        try:
            raw = await self._scripts(CountFirstDelta(MetaRunsKeys(k.meta, k.runs), run_id))
        except Exception as exc:  # a metric is not worth a stream's trouble: an outage loses one sample
            if not is_outage(exc):
                logger.exception("time to first delta not counted for run %s", run_id)
            return
        if raw is None:
            return  # another gateway counted it, or the run is gone
        record = json.loads(raw)  # two fields of it: no model of the whole run
        received_at = record.get("received_at")
        if received_at is None:
            return  # queued over a socket, or before gateways stamped requests
        trace = record.get("trace")  # an opaque field: JSON in a string (shared/store/reads.py's decode_run)
        traced = json.loads(trace) if isinstance(trace, str) else trace
        exemplar = {"trace_id": f"{RunTrace.of(decode_run(raw)).trace_id:032x}"} if traced else None
        metrics.FIRST_DELTA.observe(max(0.0, written_at - received_at), exemplar=exemplar)


def tell_first_deltas(
    first_deltas: FirstDeltas, session_id: str, head: bytes, types: Sequence[bytes], datas: Sequence[bytes]
) -> bytes:
    """Tell `first_deltas` of the runs of the deltas among events of these `types` and `datas` written
    to a client, by one reader: a feed of what it sends, or the hub of what it writes straight to a
    session's clients (gateway/live/hub.py), so the count is the same whichever path a delta
    took. `head`: how the data of the run the reader told of last starts (b"\\0" before any); returned,
    as it is now. Once per run: a session's runs go one after another, so once the last delta here
    is of the run told of last, all of them are, and a run's later deltas cost a look at the types (in
    C) and one comparison."""
    if len(types) == 1:  # a live append, mostly
        if types[0] != DELTA:
            return head
        last = 0
    elif DELTA not in types:
        return head
    else:
        last = len(types) - 1 - types[::-1].index(DELTA)
    if datas[last].startswith(head):
        return head
    for type_, data in zip(types, datas, strict=True):  # a new run's first delta: once per run
        if type_ == DELTA and not data.startswith(head):
            run_id = run_id_of(data)
            if run_id is not None:
                head = head_of(run_id)
                first_deltas.written(session_id, run_id)
    return head
