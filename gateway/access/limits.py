"""Per-tenant limits shared by all gateway replicas through Redis: runs per minute, the bytes forks
copy per hour, open streams; and one kept by each gateway on its own: chat requests in flight per
stream token.

Runs use a fixed one-minute window (a counter per tenant and minute), and fork bytes a fixed hour:
cheap, and `Retry-After` is exact, at the price of allowing up to twice the rate across a window's
edge. Forks are bounded by the hour, not the minute, because what they copy stays in Redis for the
session's retention (a day by default): it is memory they bound, more than a rate. Streams hold
slots in a sorted set that each gateway renews for its open streams, so a gateway that dies frees
its slots within `SLOT_TTL_SECONDS`.
"""

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import secrets
import time

from redis import exceptions as redis_errors

from tokentail.gateway import metrics
from tokentail.gateway.access.auth import Caller
from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.features.admission import TenantLines, line_full
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.scripts.contract import Topology
from tokentail.shared.store.scripts.limits import (
    Count,
    CounterKey,
    ForkCounters,
    ForkSpend,
    Slot,
    SlotsKey,
    SpendFork,
    TakeSlot,
)
from tokentail.shared.store.scripts.runner import ScriptRunner
from tokentail.shared.store.tenant_counts import give_back_slots, renew_slots
from tokentail.shared.vocabulary.errors import ForkBytesLimited, QueuedRunLimit, RateLimited, TooManyStreams

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
FORK_WINDOW_SECONDS = 3600
SLOT_TTL_SECONDS = 60
STREAM_RETRY_AFTER = 5  # an open stream ends any time; ask again soon
SLOT_WAIT_SECONDS = 2.0  # what a stream waits for a slot of its tenant before 429
SLOT_RETRY_SECONDS = 0.25  # how often it looks again, for streams that end on other gateways
GIVEN_BACK_PER_TAKE = 1000  # well below Lua's bound on a script's arguments


class RunBudget:
    """What a tenant creates, counted across gateways: one of its runs per minute for each request that
    makes a session or queues a run (a session made with its first run, or a fork with the run it was
    made for, is one), and the bytes its forks copy per hour. A limit of 0 counts nothing."""

    def __init__(
        self,
        redis: AnyRedis,
        keys: Keys,
        per_minute: int,
        fork_bytes_per_hour: int = 0,
        lines: TenantLines | None = None,
    ) -> None:
        """`lines`: the tenants' lines, whose bound a request that queues a run must find room in."""
        self._scripts = ScriptRunner(redis, Topology())  # count.lua, spend_fork.lua read nothing of the topology
        self._keys = keys
        self._per_minute = per_minute
        self._fork_bytes_per_hour = fork_bytes_per_hour
        self._lines = lines

    async def spend(self, tenant: str, *, queues: bool = True) -> None:
        """Count one new session or run against the tenant's minute; `RateLimited` once it is used up.
        One that `queues` a run (not a steer) first needs room in the tenant's line (`QueuedRunLimit`)."""
        if queues:
            await self._check_line(tenant)
        if not self._per_minute:
            return
        now = time.time()
        key = self._keys.tenant_runs(tenant, int(now // WINDOW_SECONDS))
        count = await self._scripts(Count(CounterKey(key), 2 * WINDOW_SECONDS))
        if count > self._per_minute:
            raise self._runs_used_up(now)

    async def spend_fork(self, tenant: str, copied: int, *, queues: bool = True) -> None:
        """Count a fork that copies `copied` bytes: a new session of the tenant's minute, and its bytes
        of the tenant's hour. `RateLimited` if the minute's runs are used up, `ForkBytesLimited` if the
        bytes would pass the hour's bound; then neither is counted. Call it before the fork is written.
        A fork made for a run it `queues` first needs room in the tenant's line (`QueuedRunLimit`)."""
        if queues:
            await self._check_line(tenant)
        if not self._per_minute and not self._fork_bytes_per_hour:
            return
        now = time.time()
        counters = ForkCounters(
            self._keys.tenant_runs(tenant, int(now // WINDOW_SECONDS)),
            self._keys.tenant_fork_bytes(tenant, int(now // FORK_WINDOW_SECONDS)),
        )
        spent = await self._scripts(
            SpendFork(
                counters,
                self._per_minute,
                2 * WINDOW_SECONDS,
                copied,
                self._fork_bytes_per_hour,
                2 * FORK_WINDOW_SECONDS,
            )
        )
        if spent is ForkSpend.RUNS_USED_UP:
            raise self._runs_used_up(now)
        if spent is ForkSpend.BYTES_USED_UP:
            metrics.RATE_LIMITED.labels("fork_bytes").inc()
            raise ForkBytesLimited(
                f"this tenant's forks may copy {self._fork_bytes_per_hour} bytes per hour, and this one's "
                f"{copied} would pass it; try again later",
                _left_of(now, FORK_WINDOW_SECONDS),
            )

    async def _check_line(self, tenant: str) -> None:
        if self._lines is None:
            return
        try:
            await self._lines.check_room(tenant)
        except QueuedRunLimit:
            metrics.RATE_LIMITED.labels("queued_runs").inc()
            raise

    def _runs_used_up(self, now: float) -> RateLimited:
        metrics.RATE_LIMITED.labels("runs").inc()
        message = f"this tenant may start {self._per_minute} runs per minute; try again later"
        return RateLimited(message, _left_of(now, WINDOW_SECONDS))


def queued_run_limit(bound: int) -> QueuedRunLimit:
    """A tenant's line found full by the script that queues a run (shared/features/admission.py), counted
    as one the gateway found full before (`RunBudget`)."""
    metrics.RATE_LIMITED.labels("queued_runs").inc()
    return line_full(bound)


def _left_of(now: float, window: int) -> int:
    """Whole seconds left of the fixed window `now` is in (at least 1): an exact `Retry-After`."""
    return max(1, math.ceil(window - now % window))


class StreamSlots:
    """A tenant's open streams, counted across gateways, and a stream token's (its session's) among
    them, so that one browser's token holds a bounded share of its tenant's. A stream that ends gives
    its slot back in the background, many in one round trip: in a reconnect storm the slots of the
    dropped streams must not queue for connections in front of the reconnects' own requests. Until it
    is flushed, a slot given back is also removed by this gateway's next take of the same tenant, so a
    client that reconnects at once never finds its old stream's slot still counted here."""

    def __init__(
        self, redis: AnyRedis, keys: Keys, limit: int, per_token: int = 0, wait_seconds: float = SLOT_WAIT_SECONDS
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._limit = limit
        # A token's share is at most its tenant's whole bound: a tenant bounded below it (4 streams of
        # the default 16 per token) bounds its tokens there too, and the refusal names the token's.
        self._per_token = min(per_token, limit) if per_token and limit else per_token
        self._wait_seconds = wait_seconds
        self._scripts = ScriptRunner(redis, Topology())  # take_slot.lua reads nothing of the topology
        self._held: dict[str, tuple[str, str | None]] = {}  # slot id -> tenant, token's session
        # tenant -> slot id -> token's session
        self._given_back: dict[str, dict[str, str | None]] = collections.defaultdict(dict)
        self._to_flush = asyncio.Event()
        self._one_given_back = asyncio.Event()  # replaced at each give-back: wakes the takes that wait

    async def take(self, tenant: str, token: str | None = None) -> str | None:
        """Take one of the tenant's stream slots, to `release` when the stream ends; `token`: the
        session of the stream token asking, whose share is bounded too. A tenant (or token) that holds
        all it may waits up to `wait_seconds` for one (a client reconnecting may come before its old
        stream is seen to end), then `TooManyStreams`. None when streams are not limited."""
        if not self._limit:
            return None
        token = token if self._per_token else None  # (counted per token only with a bound)
        slot_id = secrets.token_hex(8)
        deadline = None
        while (taken := await self._take_once(tenant, token, slot_id)) is not Slot.TAKEN:
            now = asyncio.get_running_loop().time()
            deadline = deadline or now + self._wait_seconds
            if (left := deadline - now) <= 0:
                metrics.RATE_LIMITED.labels("streams").inc()
                if taken is Slot.TOKEN_FULL:
                    message = f"this stream token has {self._per_token} streams open already, its share of its tenant's"
                else:
                    message = f"this tenant has {self._limit} streams open already"
                raise TooManyStreams(message, STREAM_RETRY_AFTER)
            # Woken by a stream that ends here; one that ends on another gateway is seen on the next try.
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # lands as the event is set (python/cpython#86296), and a cancelled request went on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, SLOT_RETRY_SECONDS)):
                    await self._one_given_back.wait()
        self._held[slot_id] = (tenant, token)
        return slot_id

    def _keys_of(self, tenant: str, token: str | None) -> SlotsKey:
        return SlotsKey(self._keys.tenant_streams(tenant), self._keys.token_streams(tenant, token or ""))

    async def _take_once(self, tenant: str, token: str | None, slot_id: str) -> Slot:
        now_ms = int(time.time() * 1000)
        given = self._given_back.get(tenant, {})
        given_back = list(itertools.islice(given, GIVEN_BACK_PER_TAKE))
        per_token = self._per_token if token is not None else 0  # an API key's streams: the tenant's bound alone
        take = TakeSlot(
            self._keys_of(tenant, token), slot_id, self._limit, per_token, now_ms, SLOT_TTL_SECONDS * 1000, given_back
        )
        taken = await self._scripts(take)
        for removed in given_back:  # the script removed them from the tenant's, and from this token's
            if given.get(removed) in (None, token):
                given.pop(removed, None)
        return taken

    async def release(self, slot_id: str | None) -> None:
        """Give the slot back (returns at once: `flush_forever` removes it from Redis)."""
        if slot_id is None:
            return
        held = self._held.pop(slot_id, None)
        if held is not None:
            tenant, token = held
            self._given_back[tenant][slot_id] = token
            self._to_flush.set()
            self._one_given_back.set()
            self._one_given_back = asyncio.Event()

    async def flush_forever(self) -> None:
        """Remove the slots given back from Redis as they come, all that waits in one round trip;
        run as a background task for the app's lifetime."""
        while True:
            await self._to_flush.wait()
            await self.flush()

    async def flush(self) -> None:
        """Remove the slots given back from Redis. One whose removal fails lapses on its own: nobody
        renews it any more."""
        self._to_flush.clear()
        given_back, self._given_back = self._given_back, collections.defaultdict(dict)
        if not any(given_back.values()):
            return
        try:
            await give_back_slots(self._redis, self._keys, given_back)
        except (redis_errors.RedisError, OSError):
            logger.warning("could not give back %d stream slots: they lapse", sum(map(len, given_back.values())))

    async def renew_forever(self) -> None:
        """Keep this gateway's slots alive; run as a background task for the app's lifetime."""
        while True:
            await asyncio.sleep(SLOT_TTL_SECONDS / 3)
            try:
                await self.renew()
            except (redis_errors.RedisError, OSError):
                logger.warning("could not renew stream slots; retrying")

    async def renew(self) -> None:
        """Keep this gateway's slots alive for `SLOT_TTL_SECONDS` more."""
        expiry = int(time.time() * 1000) + SLOT_TTL_SECONDS * 1000
        held = [(slot_id, tenant, token) for slot_id, (tenant, token) in self._held.items()]
        await renew_slots(self._redis, self._keys, held, expiry, SLOT_TTL_SECONDS * 1000)


class RequestsInFlight:
    """Chat requests in flight per stream token on this gateway, across its sockets: a browser token
    may open as many sockets as its tenant has stream slots, but what it keeps in flight is bounded
    (per gateway: behind N gateways, N times this). An API key's requests are bounded per socket only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def take(self, caller: Caller) -> bool:
        if caller.session_id is None:
            return True
        key = (caller.tenant, caller.session_id)
        if self._counts[key] >= self.limit:
            metrics.RATE_LIMITED.labels("chat_requests").inc()
            return False
        self._counts[key] += 1
        return True

    def give_back(self, caller: Caller) -> None:
        if caller.session_id is None:
            return
        key = (caller.tenant, caller.session_id)
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]
