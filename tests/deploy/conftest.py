"""The deployment files, checked without Docker: docker-compose.yml's services run as local processes."""

import os
from collections.abc import Iterator

import pytest

from tests.deploy.stack import LocalCompose, find_nginx


@pytest.fixture(scope="session")
def nginx() -> str:
    found = find_nginx()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed: .ci/run should have installed it")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return found


@pytest.fixture(scope="module")
def compose(nginx: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCompose]:
    """redis, two gateways, two workers and nginx, from docker-compose.yml; started once per module."""
    stack = LocalCompose(tmp_path_factory.mktemp("compose"), nginx, {"TOKENTAIL_LOG_LEVEL": "warning"})
    try:
        yield stack.up()
    finally:
        stack.down()
