"""Worker processes configured like production (API keys and base URLs in the environment) stream
from a local server speaking the providers' wire formats, through the official SDKs."""

import json
from typing import Any

import httpx2
import pytest

from tests.clients.sse_client import read_events
from tests.e2e.conftest import Stack
from tests.e2e.fake_llm_server import API_KEY, REQUESTS, slow_answer
from tests.e2e.watcher import killed_in_second_turn


def _provider_env(llm_url: str) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": f"{llm_url}/v1",
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": llm_url,
        "TOKENTAIL_OPENAI_COMPATIBLE_BASE_URL": f"{llm_url}/v1",
        "TOKENTAIL_OPENAI_COMPATIBLE_API_KEY": API_KEY,
    }


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


@pytest.mark.parametrize(
    ("model", "continues"),
    [("openai:gpt-test", False), ("anthropic:claude-test", True), ("openai-compatible:llama-test", True)],
)
async def test_a_run_killed_mid_answer_goes_on_from_its_record_as_its_provider_allows(
    stack: Stack, llm_url: str, model: str, continues: bool
) -> None:
    """A worker killed -9 in the model's second turn (after a tool): the new attempt does not ask
    the model for the first turn again, nor run the tool again. Anthropic and vLLM are sent the
    text clients have and write on from it; OpenAI's own API cannot, so only the cut turn restarts
    and clients drop only its text."""
    stack.env |= _provider_env(llm_url) | {"TOKENTAIL_LEASE_MS": "2000", "TOKENTAIL_OPENAI_COMPATIBLE_CONTINUE": "vllm"}
    body = {"input": "what time is it, slowly?", "model": model}
    watcher = await killed_in_second_turn(stack, stack.gateway(), body)
    seen = watcher.seen
    (result,) = seen.of("tool.completed")
    output = seen.events[-1][2]["output"]
    assert output == watcher.answer() == "Checking the clock." + slow_answer(json.dumps(result["result"]))
    assert len(seen.of("tool.started")) == 1, "the tool's recorded result was replayed, not run again"
    (continued,) = seen.of("run.continued")
    continued_at = [kind for _, kind, _ in seen.events].index("run.continued")
    before = "".join(data["text"] for _, kind, data in seen.events[:continued_at] if kind == "message.delta")
    cut = before.removeprefix("Checking the clock.")
    asked = [body for body in REQUESTS if len(body["messages"]) > 2]  # after the tool's result
    assert len(REQUESTS) - len(asked) == 1, "the first turn, recorded, was not asked again"
    assert len(asked) == 2 and cut
    if continues:  # nothing dropped: every delta is part of the answer
        assert continued["from_event_id"] == continued_at and watcher.all_text() == output
        last = asked[1]["messages"][-1]
        assert last["role"] == "assistant" and last["content"] == (cut.rstrip() if "anthropic" in model else cut)
        if "compatible" in model:
            assert asked[1]["continue_final_message"] is True and asked[1]["add_generation_prompt"] is False
    else:  # the cut turn restarts: its text is dropped, the first turn's kept
        assert continued["from_event_id"] < continued_at and watcher.all_text() == before + slow_answer(
            json.dumps(result["result"])
        )
        assert asked[1]["messages"][-1]["role"] == "tool"
