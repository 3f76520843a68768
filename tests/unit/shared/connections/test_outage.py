"""Which Redis failures are an outage, as each Redis version reports them."""

import asyncio

import pytest
import redis.asyncio.cluster
from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection

from tokentail.gateway.errors import describe_outage
from tokentail.shared.connections.outage import is_outage, ride_out

# Redis 6.2 wraps a command refused inside a script in an error of the script's own; 7.0 passes it on.
FULL_IN_A_SCRIPT_6_2 = redis_errors.ResponseError(
    "Error running script (call to f_15c6e690bd03d632084bab793190d0eee6691749): @user_script:37: "
    "@user_script: 37: -OOM command not allowed when used memory > 'maxmemory'."
)
READ_ONLY_IN_A_SCRIPT_6_2 = redis_errors.ResponseError(
    "Error running script (call to f_0): @user_script:12: @user_script: 12: "
    "-READONLY You can't write against a read only replica."
)

# What a Redis Cluster client raises while a primary fails over (redis-py strips the reply's code
# from the message): they failed runs in flight. (redis-py's types are untyped, hence the ignores.)
CLUSTER_DOWN = redis_errors.ClusterDownError("The cluster is down")  # type: ignore[no-untyped-call]
PRIMARY_DOWN = redis_errors.MasterDownError("Link with MASTER is down")  # type: ignore[no-untyped-call]
SLOT_MIGRATING = redis_errors.TryAgainError("Multiple keys request during rehashing of slot")  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), "redis_full"),
        (FULL_IN_A_SCRIPT_6_2, "redis_full"),
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), "redis_read_only"),
        (READ_ONLY_IN_A_SCRIPT_6_2, "redis_read_only"),
        (redis_errors.ConnectionError("Connection refused"), "redis_unavailable"),
        (redis_errors.ResponseError("BUSY Redis is busy running a script"), "redis_unavailable"),
        # What a Redis Cluster client raises while a primary fails over: it failed runs in flight.
        (CLUSTER_DOWN, "redis_unavailable"),
        (PRIMARY_DOWN, "redis_unavailable"),
        (SLOT_MIGRATING, "redis_unavailable"),
        (
            redis_errors.SlotNotCoveredError("Command # 1 (XADD) of pipeline caused error: slot 42 not covered"),
            "redis_unavailable",
        ),
        (redis_errors.RedisClusterException("TTL exhausted."), "redis_unavailable"),
    ],
)
def test_an_outage_is_told_by_what_redis_refused(error: Exception, kind: str) -> None:
    assert is_outage(error)
    outage = describe_outage(error)
    assert outage is not None and outage[0] == kind


def test_a_script_s_own_error_is_a_bug_not_an_outage() -> None:
    bug = redis_errors.ResponseError("Error running script (call to f_0): @user_script:3: attempt to index a nil value")
    assert not is_outage(bug) and describe_outage(bug) is None


async def test_a_write_on_a_connection_closed_under_it_is_an_outage() -> None:
    # What a Cluster client raised in failovers (redis/redis-py#4287): it closes every connection when
    # one node fails, and a run writing on one of them got an AttributeError, not a ConnectionError.
    server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = Connection(port=port, lib_name=None, lib_version=None)
    try:
        await connection.connect()  # type: ignore[no-untyped-call]
        await connection.disconnect()  # another task's reset, between connect and write
        with pytest.raises((AttributeError, TypeError)) as raised:
            await connection._send_packed_command([b"PING\r\n"])
        assert is_outage(raised.value)
    finally:
        server.close()
        await server.wait_closed()


def test_a_cluster_pipeline_without_a_default_node_mid_failover_is_an_outage() -> None:
    # What redis-py's cluster pipeline raised as a primary failed over (a chaos test saw it, answered
    # 500): `nodes.get(client.get_default_node().name)` while the client had no default node. Raised
    # here as from a line of that module, which is what the rule looks at.
    during_failover = compile("None.name", redis.asyncio.cluster.__file__, "eval")
    try:
        eval(during_failover)
    except AttributeError as exc:
        assert is_outage(exc)


def test_an_attribute_error_of_our_own_is_a_bug() -> None:
    try:
        None.append  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert not is_outage(exc)


class Outage:
    """A call that fails with `error` for its first `failures` tries, then returns how often it ran."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.tries = error, failures, 0

    async def __call__(self) -> int:
        self.tries += 1
        if self.tries <= self.failures:
            raise self.error
        return self.tries


async def test_a_call_rides_out_an_outage_and_returns_what_it_returned() -> None:
    call = Outage(redis_errors.ConnectionError("connection reset"), failures=3)
    assert await ride_out(call, "a call") == 4


async def test_a_call_gives_up_once_the_outage_outlasts_its_bound() -> None:
    call = Outage(redis_errors.ConnectionError("connection refused"), failures=10**9)
    with pytest.raises(redis_errors.ConnectionError):
        await ride_out(call, "a call", within=0.3)
    assert 2 <= call.tries < 20  # tried again, with growing pauses, then stopped


async def test_an_error_that_is_no_outage_is_raised_at_once() -> None:
    call = Outage(redis_errors.ResponseError("ERR user_script:12: Script attempted to access nonexistent global"), 1)
    with pytest.raises(redis_errors.ResponseError):
        await ride_out(call, "a call")
    assert call.tries == 1
