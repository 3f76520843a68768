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

Workers retry what is an outage (an append keeps its id, so nothing is written twice) and stay up;
the gateway answers 503 with `Retry-After`. Anything else (a script error, a wrong type) is a bug.
"""

import traceback
from pathlib import Path

import redis.asyncio.cluster
import redis.asyncio.connection
from redis import exceptions as redis_errors

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


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, _OUTAGES) or out_of_memory(exc) or read_only(exc) or _torn_down(exc):
        return True
    return isinstance(exc, redis_errors.ResponseError) and str(exc).startswith("BUSY ")


_REDIS_PY_MODULES = {Path(redis.asyncio.connection.__file__), Path(redis.asyncio.cluster.__file__)}


def _torn_down(exc: BaseException) -> bool:
    if not isinstance(exc, AttributeError | TypeError):
        return False
    return any(Path(frame.filename) in _REDIS_PY_MODULES for frame in traceback.extract_tb(exc.__traceback__))


def out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, redis_errors.OutOfMemoryError) or _inside_a_script(exc, "OOM")


def read_only(exc: BaseException) -> bool:
    return isinstance(exc, redis_errors.ReadOnlyError) or _inside_a_script(exc, "READONLY")


def _inside_a_script(exc: BaseException, code: str) -> bool:
    # Redis before 7.0 reports a command refused inside a script as an error of the script's own
    # ("Error running script ...: @user_script: 37: -OOM command not allowed ..."); 7.0 passes it on.
    return isinstance(exc, redis_errors.ResponseError) and f": -{code} " in str(exc)
