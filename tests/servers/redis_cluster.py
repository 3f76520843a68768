"""The local Redis Cluster in the tests: `LocalCluster` (tokentail/redis_server.py, which the benchmark
uses too) where one can be made, and a skip, or a failure in CI, where none can."""

import os

import pytest

from tokentail.redis_server import cluster_unavailable


def require() -> None:
    """Skip the test where no local cluster can be made; fail it in CI, which must provide one."""
    if (why := cluster_unavailable()) is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{why}: .ci/run should have installed Redis >= 7.0 and redis-cli")
        pytest.skip(why)
