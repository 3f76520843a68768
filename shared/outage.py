"""Which Redis failures are an outage to wait out, not a bug to report.

    unreachable      ConnectionError (also LOADING: a restarted Redis reading its AOF), TimeoutError, OSError
    refuses writes   OOM (at `maxmemory` with `noeviction`), READONLY (a replica, during a failover)
    busy             BUSY (a script runs long), MASTERDOWN, TRYAGAIN and CLUSTERDOWN (a cluster moving slots)

Workers retry what is an outage (an append keeps its id, so nothing is written twice) and stay up;
the gateway answers 503 with `Retry-After`. Anything else (a script error, a wrong type) is a bug.
"""

from redis import exceptions as redis_errors

_BUSY_REPLIES = ("BUSY ", "MASTERDOWN ", "TRYAGAIN ", "CLUSTERDOWN ")


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError):
        return True
    if out_of_memory(exc) or read_only(exc):
        return True
    return isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_BUSY_REPLIES)


def out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, redis_errors.OutOfMemoryError) or _inside_a_script(exc, "OOM")


def read_only(exc: BaseException) -> bool:
    return isinstance(exc, redis_errors.ReadOnlyError) or _inside_a_script(exc, "READONLY")


def _inside_a_script(exc: BaseException, code: str) -> bool:
    # Redis before 7.0 reports a command refused inside a script as an error of the script's own
    # ("Error running script ...: @user_script: 37: -OOM command not allowed ..."); 7.0 passes it on.
    return isinstance(exc, redis_errors.ResponseError) and f": -{code} " in str(exc)
