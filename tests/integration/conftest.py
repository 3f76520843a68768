"""The integration tests' fixtures are plugins (tests/fixtures/), registered in tests/conftest.py."""

# test_socket.py still imports Gateway from here; it moves to tests.fixtures.stack with the store split.
from tests.fixtures.stack import Gateway

__all__ = ["Gateway"]
