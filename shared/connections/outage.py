"""Which Redis failures are an outage to wait out, not a bug to report, by redis-py's exception types.

    unreachable      ConnectionError (also LOADING: a restarted Redis reading its AOF; and a pool with
                     no free connection), TimeoutError, OSError
    refuses writes   OutOfMemoryError (at `maxmemory` with `noeviction`), ReadOnlyError (a replica,
                     during a failover)
    a cluster moving ClusterError (CLUSTERDOWN, MASTERDOWN: a primary failing over), TryAgainError
                     (a slot migrating), RedisClusterException (no node answers for a slot yet:
                     SlotNotCoveredError, or the cluster client gave up following MOVED replies)
    busy             BUSY (a script runs long): redis-py has no type for it, so its reply is read
    torn down        AttributeError or TypeError from redis-py's connection: a write on a connection
                     another task closed under it (the cluster client closes every connection when one
                     node fails) or the peer reset, which redis-py does not turn into a
                     ConnectionError (redis/redis-py#4287, still so in 8.1); or from its cluster
                     client, whose pipeline looks up a default node it has none of while it finds the
                     cluster's nodes again after one failed (`get_default_node().name`)

Both processes ride out an outage (`ride_out`) on the calls that are safe to send again: every
script a run depends on recognises a try of its own whose reply was lost (an append by its id, a
start by its lease token, a queued run by its id), and reads change nothing. A worker rides out up to
a minute (OUTAGE_SECONDS), then gives the job back to the queue; the gateway a few seconds, then
answers 503 with `Retry-After`. Anything else (a script error, a wrong type) is a bug, raised at once.
"""

import asyncio
import itertools
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import redis.asyncio.cluster
import redis.asyncio.connection
from redis import exceptions as redis_errors

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How long a worker's call a run depends on (a start, an append, a read of the session) keeps trying
# through an outage before it fails; the run's lease stays, so it is taken over once Redis is back.
OUTAGE_SECONDS = 60.0
MAX_PAUSE_SECONDS = 1.0

_OUTAGES = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
    redis_errors.RedisClusterException,
)


async def ride_out(
    call: Callable[[], Awaitable[T]],
    what: str,
    *,
    within: float | None = None,
    since: float | None = None,
    retried: Callable[[BaseException], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`call()`, tried again through a Redis outage for up to `within` seconds (OUTAGE_SECONDS by
    default) since `since` (its first try by default); any other error, or the outage's once that time
    is up, is raised. `retried`: which errors are the outage to ride out (`is_outage` by default).
    `call` must be safe to send again: its first try may have run, its reply lost. `what` names it in
    the log (once per outage, not per try)."""
    within = OUTAGE_SECONDS if within is None else within
    started = clock() if since is None else since
    retried = retried or is_outage
    for failures in itertools.count():
        try:
            result = await call()
        except Exception as exc:
            if not retried(exc) or clock() - started > within:
                raise
            if not failures:
                logger.warning("%s failed (%s: %s); retrying for up to %.0f s", what, type(exc).__name__, exc, within)
            await asyncio.sleep(min(MAX_PAUSE_SECONDS, 0.05 * 2**failures))
        else:
            if failures:
                logger.info("%s went through after %.1f s", what, clock() - started)
            return result
    raise AssertionError("unreachable")


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, _OUTAGES) or refused(exc) or _torn_down(exc)


_REDIS_PY_MODULES = {Path(redis.asyncio.connection.__file__), Path(redis.asyncio.cluster.__file__)}


def _torn_down(exc: BaseException) -> bool:
    if not isinstance(exc, AttributeError | TypeError):
        return False
    return any(Path(frame.filename) in _REDIS_PY_MODULES for frame in traceback.extract_tb(exc.__traceback__))


def refused(exc: BaseException) -> bool:
    """An outage in which Redis answered, refusing the command: nothing it asked was done (full,
    read-only, busy), unlike a connection lost, which may have taken a reply with it."""
    busy = isinstance(exc, redis_errors.ResponseError) and str(exc).startswith("BUSY ")
    return out_of_memory(exc) or read_only(exc) or busy


def unanswered(exc: BaseException) -> bool:
    """An outage that may have lost a reply: the command may have been done."""
    return is_outage(exc) and not refused(exc)


def out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, redis_errors.OutOfMemoryError) or _inside_a_script(exc, "OOM")


def read_only(exc: BaseException) -> bool:
    return isinstance(exc, redis_errors.ReadOnlyError) or _inside_a_script(exc, "READONLY")


def _inside_a_script(exc: BaseException, code: str) -> bool:
    # Redis before 7.0 reports a command refused inside a script as an error of the script's own
    # ("Error running script ...: @user_script: 37: -OOM command not allowed ..."); 7.0 passes it on.
    return isinstance(exc, redis_errors.ResponseError) and f": -{code} " in str(exc)
