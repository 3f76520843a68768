"""A Semantic Kernel agent (examples/semantic_kernel_agent.py, unchanged) in real gateway and worker
processes, its OpenAI client streaming from the local fake OpenAI server."""

import pytest

pytest.importorskip("semantic_kernel")

from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks import fake_openai  # noqa: E402
from tests.e2e.frameworks.scenarios import (  # noqa: E402
    Example,
    answer_with_the_weather_tool,
    cancel_mid_answer,
    worker_killed_mid_answer,
)

AGENTS = (
    '{"weather": "examples.semantic_kernel_agent:weather",'
    ' "weather_chat": "examples.semantic_kernel_agent:weather_chat"}'
)


@pytest.fixture
def example(stack: Stack, llm: str) -> Example:
    return Example(stack, llm, AGENTS)


@pytest.mark.parametrize("agent", ["weather", "weather_chat"])  # a ChatCompletionAgent; a chat service
async def test_the_answer_streams_with_the_plugin_call_live_and_usage(example: Example, agent: str) -> None:
    await answer_with_the_weather_tool(example, agent)
    assert fake_openai.calls()[0].tools == ["WeatherPlugin-get_weather"]  # Semantic Kernel's name for it


async def test_a_cancel_mid_answer_stops_the_model_s_stream(example: Example) -> None:
    await cancel_mid_answer(example)


async def test_a_worker_killed_mid_answer_is_taken_over_and_the_run_completes(example: Example) -> None:
    await worker_killed_mid_answer(example)
