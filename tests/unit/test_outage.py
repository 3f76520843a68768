"""Which Redis failures are an outage, as each Redis version reports them."""

import pytest
from redis import exceptions as redis_errors

from tokentail.gateway.errors import describe_outage
from tokentail.shared.outage import is_outage

# Redis 6.2 wraps a command refused inside a script in an error of the script's own; 7.0 passes it on.
FULL_IN_A_SCRIPT_6_2 = redis_errors.ResponseError(
    "Error running script (call to f_15c6e690bd03d632084bab793190d0eee6691749): @user_script:37: "
    "@user_script: 37: -OOM command not allowed when used memory > 'maxmemory'."
)
READ_ONLY_IN_A_SCRIPT_6_2 = redis_errors.ResponseError(
    "Error running script (call to f_0): @user_script:12: @user_script: 12: "
    "-READONLY You can't write against a read only replica."
)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), "redis_full"),
        (FULL_IN_A_SCRIPT_6_2, "redis_full"),
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), "redis_read_only"),
        (READ_ONLY_IN_A_SCRIPT_6_2, "redis_read_only"),
        (redis_errors.ConnectionError("Connection refused"), "redis_unavailable"),
        (redis_errors.ResponseError("BUSY Redis is busy running a script"), "redis_unavailable"),
    ],
)
def test_an_outage_is_told_by_what_redis_refused(error: Exception, kind: str) -> None:
    assert is_outage(error)
    outage = describe_outage(error)
    assert outage is not None and outage[0] == kind


def test_a_script_s_own_error_is_a_bug_not_an_outage() -> None:
    bug = redis_errors.ResponseError("Error running script (call to f_0): @user_script:3: attempt to index a nil value")
    assert not is_outage(bug) and describe_outage(bug) is None
