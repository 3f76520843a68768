"""Every framework adapter's example, unchanged, on `tokentail dev --offline`: no API key and no
network, as docs/agents.md tells a newcomer to try them. Each environment (noxfile.py) runs the
examples whose framework it has; the others are skipped there.

The examples' OpenAI clients reach the offline model (tokentail/offline.py), which calls their
`get_weather` tool for the question and answers with its result."""

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx2
import pytest

from tests.clients.sse_client import read_events
from tests.e2e.conftest import stop, wait_until_ready
from tokentail.redis_server import free_port

QUESTION = "What is the weather in Paris?"
WEATHER = {"city": "Paris", "temperature_c": 21, "sky": "sunny"}  # what every example's get_weather returns
# agent name -> (its import path, the framework it needs)
EXAMPLES = {
    "langgraph": ("examples.langgraph_agent:weather", "langgraph"),
    "langchain": ("examples.langchain_agent:weather", "langchain_openai"),
    "haystack": ("examples.haystack_agent:weather", "haystack"),
    "pydantic_ai": ("examples.pydantic_ai_agent:weather", "pydantic_ai"),
    "semantic_kernel": ("examples.semantic_kernel_agent:weather", "semantic_kernel"),
    "semantic_kernel_chat": ("examples.semantic_kernel_agent:weather_chat", "semantic_kernel"),
    "openai_agents": ("examples.openai_agents_agent:weather", "agents"),
}
HERE = {name: path for name, (path, framework) in EXAMPLES.items() if importlib.util.find_spec(framework) is not None}
if "haystack" in HERE:  # the tutorial's first pipeline: a custom component answering `reply: str`, whole
    HERE["haystack_pipeline"] = "tests.e2e.frameworks.haystack_pipeline:answer"


@pytest.fixture(scope="module")
def dev() -> Iterator[str]:
    """`tokentail dev --offline` with the examples this environment can run, and no OpenAI settings."""
    if not HERE:
        pytest.skip("no framework of an example is installed here")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENTAIL_", "OPENAI_"))}
    env |= {
        "TOKENTAIL_AGENTS": json.dumps(HERE),
        "HAYSTACK_TELEMETRY_ENABLED": "False",
        "TOKENTAIL_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tokentail.cli", "dev", "--port", str(port), "--workers", "2", "--offline"], env=env
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", process, timeout=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process, timeout=30)


@pytest.mark.parametrize("agent", sorted(EXAMPLES))
async def test_the_example_runs_on_the_offline_model_with_no_key(dev: str, agent: str) -> None:
    if agent not in HERE:
        pytest.skip(f"{EXAMPLES[agent][1]} is not installed in this environment")
    async with httpx2.AsyncClient(base_url=dev, timeout=60) as client:
        created = await client.post("/v1/sessions", json={"input": QUESTION, "agent": agent})
        assert created.status_code == 201, created.text
        received = await read_events(client, created.json()["events_url"])
    kinds = [kind for _, kind, _ in received.events]
    assert kinds[:3] == ["run.queued", "run.started", "tool.started"], kinds
    assert kinds[-1] == "run.completed" and "message.delta" in kinds and "status" not in kinds, received.events
    started = next(data for _, kind, data in received.events if kind == "tool.started")
    completed = next(data for _, kind, data in received.events if kind == "tool.completed")
    assert started["name"] == "get_weather" and started["arguments"] == {"city": "Paris"}
    assert completed["call_id"] == started["call_id"] and completed["result"] == WEATHER
    output = received.events[-1][2]["output"]
    assert "get_weather tool says" in output and "sunny" in output, output


@pytest.mark.skipif("haystack_pipeline" not in HERE, reason="haystack is not installed in this environment")
async def test_the_haystack_tutorial_s_custom_component_answers(dev: str) -> None:
    # Seed 000: a pipeline whose component answers `reply: str`, not streamed. It completed with "".
    async with httpx2.AsyncClient(base_url=dev, timeout=60) as client:
        created = await client.post("/v1/sessions", json={"input": "hello", "agent": "haystack_pipeline"})
        received = await read_events(client, created.json()["events_url"])
    assert [kind for _, kind, _ in received.events] == ["run.queued", "run.started", "message.delta", "run.completed"]
    output = received.events[-1][2]["output"]
    assert output.startswith("Hello! This is tokentail's offline scripted model"), output
