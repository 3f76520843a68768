"""A Semantic Kernel agent (examples/semantic_kernel_agent.py, unchanged) in real gateway and worker
processes, its OpenAI client streaming from the local fake OpenAI server."""

import asyncio
from typing import Any

import httpx2
import pytest

pytest.importorskip("semantic_kernel")

from tests.clients.sse_client import read_events  # noqa: E402
from tests.e2e.conftest import Stack  # noqa: E402
from tests.e2e.frameworks import fake_openai  # noqa: E402
from tests.e2e.frameworks.scenarios import (  # noqa: E402
    QUESTION,
    Example,
    answer_with_the_weather_tool,
    cancel_mid_answer,
    worker_killed_mid_answer,
)
from tests.support.waiting import scaled

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


VARIANTS = (
    '{"down": "tests.e2e.frameworks.semantic_kernel_variants:down",'
    ' "with_system": "tests.e2e.frameworks.semantic_kernel_variants:with_system"}'
)


async def _events(example: Example, agent: str) -> list[tuple[int | None, str, dict[str, Any]]]:
    url = example.gateway()
    example.worker()
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        created = (await client.post("/v1/sessions", json={"input": QUESTION, "agent": agent})).json()
        return (await asyncio.wait_for(read_events(client, created["events_url"]), scaled(60))).events


async def test_a_function_that_raises_is_a_failed_call_though_the_model_is_told_its_text(
    stack: Stack, llm: str
) -> None:
    # Semantic Kernel gives the model the error as the result: the stream said the call completed.
    events = await _events(Example(stack, llm, VARIANTS), "down")
    kinds = [kind for _, kind, _ in events]
    assert kinds[2:4] == ["tool.started", "tool.failed"] and kinds[-1] == "run.completed", kinds
    assert events[3][2]["error"] == "weather service unavailable"


async def test_a_chat_service_s_system_message_reaches_the_model_first(stack: Stack, llm: str) -> None:
    events = await _events(Example(stack, llm, VARIANTS), "with_system")
    assert events[-1][1] == "run.completed"
    sent = fake_openai.calls()[0].messages
    assert sent[0] == {"role": "system", "content": "You answer questions about the weather, in one sentence."}, sent
