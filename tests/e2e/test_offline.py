"""`tokentail offline`: the scripted model behind OpenAI's Chat Completions API, judged by the official
`openai` SDK, streamed and whole, with tool calls; and `tokentail dev --offline`, whose built-in
agent reaches it through the `openai` provider."""

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)

from tests.clients.sse_client import read_events
from tests.e2e.conftest import stop, wait_until_ready
from tests.support.waiting import eventually
from tokentail.redis_server import free_port
from tokentail.worker.providers.scripted import scripted_tokens

WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALCULATOR_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}
FAST = {"tokens": 12, "tokens_per_second": 0}  # the scripted model's own params, as extra fields of the body


@pytest.fixture(scope="module")
def offline_url() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tokentail.cli", "offline", "--port", str(port)])
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", server)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(server)


@pytest.fixture
async def client(offline_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=offline_url, api_key="offline", max_retries=0) as sdk:
        yield sdk


async def test_a_streamed_answer_with_usage(client: openai.AsyncOpenAI) -> None:
    question = "Tell me about streams."
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body=FAST,
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(scripted_tokens(question, 12))
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # streamed, not whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        4,
        len(scripted_tokens(question, 12)),
    )
    assert {c.model for c in chunks} == {"gpt-4o-mini"} and len({c.id for c in chunks}) == 1


def test_a_whole_answer_to_the_synchronous_client(offline_url: str) -> None:
    with openai.OpenAI(base_url=offline_url, api_key="offline", max_retries=0) as sdk:
        answer = sdk.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
        )
    assert answer.object == "chat.completion" and answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == "".join(scripted_tokens("hello", 150))
    assert answer.usage is not None and answer.usage.completion_tokens == len(scripted_tokens("hello", 150))


async def test_a_streamed_tool_call_then_the_answer_with_its_result(client: openai.AsyncOpenAI) -> None:
    # The SDK's own stream helper assembles the call from its streamed fragments, and checks them.
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    async with client.chat.completions.stream(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], extra_body=FAST
    ) as stream:
        called = await stream.get_final_completion()
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (call,) = choice.message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall) and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"} and call.id.startswith("call_")
    result = json.dumps({"city": "Paris", "sky": "sunny"})
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": result},
    ]
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    assert answer.choices[0].message.content == f"The get_weather tool says {result}."


async def test_a_whole_calculator_call_on_a_natural_sentence(client: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Please calculate 12 * (3 + 4)."}]
    called = await client.chat.completions.create(model="m", messages=messages, tools=[CALCULATOR_TOOL])
    (call,) = called.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert called.choices[0].message.content == "Let me calculate that. "
    assert json.loads(call.function.arguments) == {"expression": "12 * (3 + 4)"}
    messages += [
        called.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "84"},
    ]
    answer = await client.chat.completions.create(model="m", messages=messages, tools=[CALCULATOR_TOOL])
    assert answer.choices[0].message.content == "The calculator says 84."


async def test_tool_choice_none_calls_no_tool(client: openai.AsyncOpenAI) -> None:
    answer = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="none",
        extra_body=FAST,
    )
    assert answer.choices[0].message.tool_calls is None and answer.choices[0].message.content


async def test_what_it_cannot_serve_is_refused_as_openai_does(client: openai.AsyncOpenAI) -> None:
    hello: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        await client.chat.completions.create(model="m", messages=hello, n=2)
    with pytest.raises(openai.BadRequestError, match="tokens_per_second"):
        await client.chat.completions.create(model="m", messages=hello, extra_body={"tokens_per_second": -1})
    with pytest.raises(openai.BadRequestError, match="messages"):
        await client.chat.completions.create(model="m", messages=[])
    stream = await client.chat.completions.create(
        model="m", messages=hello, stream=True, extra_body={"fail_at_token": 3, "tokens_per_second": 0}
    )
    received: list[str] = []
    with pytest.raises(openai.APIError, match="scripted failure at token 3"):
        async for chunk in stream:
            received += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert "".join(received) == "".join(scripted_tokens("hello", 150)[:3])


async def test_the_models_list_names_the_scripted_model(client: openai.AsyncOpenAI) -> None:
    assert [model.id async for model in client.models.list()] == ["scripted"]


@pytest.fixture
def dev_offline(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`tokentail dev --offline` with no OpenAI or tokentail setting: its URL, and the file of its output."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENTAIL_", "OPENAI_"))}
    output = tmp_path / "dev.out"
    with output.open("wb") as sink:
        dev = subprocess.Popen(
            [sys.executable, "-m", "tokentail.cli", "dev", "--port", str(port), "--offline"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", dev, timeout=60)
        yield f"http://127.0.0.1:{port}", output
    finally:
        stop(dev, timeout=30)


async def test_dev_offline_points_the_workers_openai_clients_at_the_offline_model(
    dev_offline: tuple[str, Path],
) -> None:
    # No key in the environment: the built-in agent on `openai:` reaches the offline model, tools and all.
    url, output = dev_offline
    async with httpx2.AsyncClient(base_url=url, timeout=30) as http:
        body = {"input": "Please calculate 12 * (3 + 4).", "model": "openai:gpt-4o-mini"}
        created = (await http.post("/v1/sessions", json=body)).json()
        received = await read_events(http, created["events_url"])
    kinds = [kind for _, kind, _ in received.events]
    assert kinds[-1] == "run.completed" and "tool.started" in kinds and "tool.completed" in kinds, kinds
    assert received.events[-1][2]["output"] == "Let me calculate that. The calculator says 84."

    def banner() -> str:
        printed = output.read_text()
        assert "tokentail dev is running" in printed
        return printed

    printed = await eventually(banner, what="the banner")
    assert "model     scripted by default" in printed
    assert re.search(r"offline   (http://127\.0\.0\.1:\d+/v1) .*OPENAI_BASE_URL=\1 OPENAI_API_KEY=offline", printed), (
        printed
    )
