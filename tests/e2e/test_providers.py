"""Worker processes configured like production (API keys and base URLs in the environment) stream
from a local server speaking the providers' wire formats, through the official SDKs."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import uvicorn

from tests.e2e.conftest import Stack
from tests.e2e.fake_llm_server import API_KEY, app
from tests.sse_client import read_events
from tests.waiting import eventually
from tokentail.redis_server import free_port


@pytest.fixture
async def llm_url() -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def _ask(url: str, model: str, text: str) -> list[tuple[int | None, str, dict[str, Any]]]:
    async with httpx2.AsyncClient(base_url=url, timeout=20) as client:
        created = await client.post("/v1/sessions", json={"input": text, "model": model})
        assert created.status_code == 201, created.text
        received = await read_events(client, created.json()["events_url"])
    assert received.ids == list(range(1, len(received.ids) + 1))
    return received.events


@pytest.mark.parametrize("model", ["openai:gpt-test", "anthropic:claude-test", "openai-compatible:llama-test"])
async def test_a_real_worker_streams_text_and_tool_calls_from_each_provider(
    stack: Stack, llm_url: str, model: str
) -> None:
    stack.worker(
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=f"{llm_url}/v1",
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=llm_url,
        TOKENTAIL_OPENAI_COMPATIBLE_BASE_URL=f"{llm_url}/v1",
        TOKENTAIL_OPENAI_COMPATIBLE_API_KEY=API_KEY,
    )
    events = await _ask(stack.gateway(), model, "what time is it?")
    kinds = [kind for _, kind, _ in events]
    assert kinds[:2] == ["run.queued", "run.started"] and kinds[-1] == "run.completed", events[-1]
    started = next(data for _, kind, data in events if kind == "tool.started")
    assert started["name"] == "current_time" and started["arguments"] == {"timezone": "UTC"}
    output = events[-1][2]["output"]
    assert output.startswith("Checking the clock.The time is ") and output.endswith('+00:00".')
    assert output == "".join(data["text"] for _, kind, data in events if kind == "message.delta")
    assert events[-1][2]["usage"]["output_tokens"] > 0


async def test_a_refused_key_fails_the_run_with_a_clear_error_and_no_key(stack: Stack, llm_url: str) -> None:
    stack.worker(OPENAI_API_KEY="sk-wrong-secret", OPENAI_BASE_URL=f"{llm_url}/v1")
    events = await _ask(stack.gateway(), "openai:gpt-test", "hello")
    assert events[-1][1] == "run.failed"
    error = events[-1][2]["error"]
    assert error["type"] == "authentication_error" and "sk-wrong-secret" not in error["message"]
