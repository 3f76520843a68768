"""The framework adapters' tests: the fake OpenAI server their examples stream from."""

from collections.abc import Iterator

import pytest

from tests.e2e.frameworks import fake_openai


@pytest.fixture
def llm() -> Iterator[str]:
    with fake_openai.serving() as url:
        yield url
