"""The OpenAI and Anthropic providers through the official SDKs, on their exact streaming wire formats."""

from collections.abc import AsyncIterator

import pytest

from tests.servers.fake_llm import FakeLLM, Reply, anthropic_error, anthropic_stream, openai_chunk, openai_stream
from tokentail.shared.vocabulary.catalog import OPENAI_COMPATIBLE, PROVIDERS
from tokentail.shared.vocabulary.params import RunParams
from tokentail.worker.providers import BUILDERS
from tokentail.worker.providers.anthropic_messages import AnthropicProvider
from tokentail.worker.providers.base import (
    Chunk,
    InvalidRequest,
    Message,
    ModelRequest,
    Progress,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    Usage,
    after_prefill,
)
from tokentail.worker.providers.openai_chat import OpenAIProvider
from tokentail.worker.tools import ToolSpec

TOOLS = [
    ToolSpec("calculator", "arithmetic", {"type": "object", "properties": {"expression": {"type": "string"}}}),
    ToolSpec("current_time", "the time", {"type": "object", "properties": {"timezone": {"type": "string"}}}),
]
MESSAGES = [Message("system", "be brief"), Message("user", "hi")]
REQUEST = ModelRequest("m", MESSAGES, TOOLS, RunParams(temperature=0.2))


async def _collect(provider: OpenAIProvider | AnthropicProvider, request: ModelRequest = REQUEST) -> list[object]:
    """The chunks the agent loop acts on (without the Progress markers the timeouts count)."""
    return [chunk async for chunk in provider.stream(request) if not isinstance(chunk, Progress)]


async def test_openai_text_parallel_tool_calls_in_fragments_and_usage() -> None:
    calls = [
        (0, "call_a", "calculator", ['{"expre', 'ssion": "2', '+2"}']),
        (1, "call_b", "current_time", ['{"timezone"', ': "UTC"}']),
    ]
    fake = FakeLLM([Reply(chunks=openai_stream(["Hel", "lo"], calls))])
    chunks = await _collect(OpenAIProvider(fake.openai()))
    assert chunks == [
        TextDelta("Hel"),
        TextDelta("lo"),
        Usage(10, 5),
        ToolCall("call_a", "calculator", {"expression": "2+2"}),
        ToolCall("call_b", "current_time", {"timezone": "UTC"}),
    ]
    sent = fake.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["temperature"] == 0.2
    assert [t["function"]["name"] for t in sent["tools"]] == ["calculator", "current_time"]
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize("provider", ["openai", OPENAI_COMPATIBLE])
async def test_openai_params_go_as_the_sdk_s_own_arguments(provider: str) -> None:
    knobs = {"temperature": 0.5, "top_p": 0.9, "max_tokens": 64, "stop": ["END"], "seed": 7}
    knobs |= {"presence_penalty": 0.1, "frequency_penalty": -0.1}
    extra = {"top_k": 40} if provider == OPENAI_COMPATIBLE else {}
    fake = FakeLLM([Reply(chunks=openai_stream(["ok"]))])
    request = ModelRequest("m", MESSAGES, [], RunParams.model_validate(knobs | extra))
    await _collect(OpenAIProvider(fake.openai(), provider=provider), request)
    sent = fake.requests[0]
    assert {key: sent[key] for key in knobs | extra} == knobs | extra
    assert sent["model"] == "m" and len(sent["messages"]) == 2 and "n" not in sent


async def test_a_knob_the_provider_does_not_take_fails_the_run_clearly() -> None:
    fake = FakeLLM([])
    with pytest.raises(InvalidRequest, match="top_k"):
        await _collect(OpenAIProvider(fake.openai()), ModelRequest("m", MESSAGES, [], RunParams(top_k=5)))
    with pytest.raises(InvalidRequest, match="temperature"):
        await _collect(AnthropicProvider(fake.anthropic()), REQUEST)
    assert fake.requests == []


async def test_openai_tool_results_go_back_as_tool_messages() -> None:
    fake = FakeLLM([Reply(chunks=openai_stream(["4"]))])
    call = ToolCall("call_a", "calculator", {"expression": "2+2"})
    request = ModelRequest(
        "m",
        [Message("user", "2+2?"), Message("assistant", "", tool_calls=(call,)), Message("tool", "4", call_id="call_a")],
    )
    await _collect(OpenAIProvider(fake.openai()), request)
    assistant, tool = fake.requests[0]["messages"][1:]
    assert assistant["tool_calls"][0]["function"] == {"name": "calculator", "arguments": '{"expression": "2+2"}'}
    assert tool == {"role": "tool", "tool_call_id": "call_a", "content": "4"}


async def test_openai_arguments_that_are_not_json_are_reported_not_raised() -> None:
    fake = FakeLLM([Reply(chunks=openai_stream([], [(0, "call_x", "calculator", ['{"expression": 2+'])]))])
    chunks = await _collect(OpenAIProvider(fake.openai()))
    call = next(c for c in chunks if isinstance(c, ToolCall))
    assert call.arguments == {} and call.invalid_arguments == '{"expression": 2+'


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retryable", "retry_after"),
    [
        (429, {"retry-after": "2"}, "rate_limited", True, 2.0),
        (429, {"retry-after-ms": "1500"}, "rate_limited", True, 1.5),
        (503, {}, "provider_unavailable", True, None),
        (401, {}, "authentication_error", False, None),
        (404, {}, "model_not_found", False, None),
        (400, {}, "invalid_request", False, None),
    ],
)
async def test_openai_http_errors_map_to_what_they_mean(
    status: int, headers: dict[str, str], kind: str, retryable: bool, retry_after: float | None
) -> None:
    fake = FakeLLM([Reply(status=status, headers=headers)])
    with pytest.raises(ProviderError) as info:
        await _collect(OpenAIProvider(fake.openai()))
    assert (info.value.kind, info.value.retryable, info.value.retry_after) == (kind, retryable, retry_after)
    assert "test-key" not in str(info.value)


async def test_anthropic_text_tool_use_from_input_json_deltas_pings_and_usage() -> None:
    tool_uses = [("toolu_1", "calculator", ["", '{"expression": "2', '+2"}']), ("toolu_2", "current_time", ["{}"])]
    fake = FakeLLM([Reply(chunks=anthropic_stream(["Hel", "lo"], tool_uses))])
    request = ModelRequest("m", MESSAGES, TOOLS, RunParams(stop=["END"]))
    chunks = await _collect(AnthropicProvider(fake.anthropic()), request)
    assert chunks == [
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCall("toolu_1", "calculator", {"expression": "2+2"}),
        ToolCall("toolu_2", "current_time", {}),
        Usage(12, 30),
    ]
    sent = fake.requests[0]
    assert sent["system"] == "be brief" and sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["stream"] is True and sent["max_tokens"] == 4096 and sent["stop_sequences"] == ["END"]
    assert [t["name"] for t in sent["tools"]] == ["calculator", "current_time"]


async def test_anthropic_parallel_tool_results_go_back_in_one_user_message() -> None:
    fake = FakeLLM([Reply(chunks=anthropic_stream(["done"]))])
    calls = (ToolCall("t1", "calculator", {"expression": "1"}), ToolCall("t2", "current_time", {}))
    request = ModelRequest(
        "m",
        [
            Message("user", "q"),
            Message("assistant", "", tool_calls=calls),
            Message("tool", "1", call_id="t1"),
            Message("tool", "error: boom", call_id="t2", is_error=True),
        ],
    )
    await _collect(AnthropicProvider(fake.anthropic()), request)
    messages = fake.requests[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["type"] for b in messages[1]["content"]] == ["tool_use", "tool_use"]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "1"},
        {"type": "tool_result", "tool_use_id": "t2", "content": "error: boom", "is_error": True},
    ]


async def test_anthropic_error_event_inside_the_stream() -> None:
    fake = FakeLLM([Reply(chunks=anthropic_stream(["Hi"])[:2] + [anthropic_error("overloaded_error")])])
    with pytest.raises(ProviderError) as info:
        await _collect(AnthropicProvider(fake.anthropic()), ModelRequest("m", MESSAGES))
    assert info.value.retryable and "overloaded_error" in str(info.value)


async def test_anthropic_overloaded_status_is_retryable() -> None:
    fake = FakeLLM([Reply(status=529)])
    with pytest.raises(ProviderError) as info:
        await _collect(AnthropicProvider(fake.anthropic()), ModelRequest("m", MESSAGES))
    assert info.value.retryable and info.value.kind == "provider_unavailable"


async def test_tool_call_fragments_count_as_activity_for_the_timeouts() -> None:
    from tokentail.worker.run.retry import RetryPolicy, stream_with_retries

    fragments = ['{"expression": "', *["1+" for _ in range(8)], '1"}']
    chunks = openai_stream([], [(0, "c1", "calculator", fragments)])
    fake = FakeLLM([Reply(chunks=chunks)])
    slow_provider = OpenAIProvider(fake.openai())
    policy = RetryPolicy(max_retries=0, first_token_timeout=5, idle_timeout=5)

    async def on_retry(error: ProviderError, delay: float) -> None:
        raise AssertionError("no retry expected")

    seen = [c async for c in stream_with_retries(slow_provider, REQUEST, policy, on_retry)]
    assert sum(isinstance(c, Progress) for c in seen) == len(fragments) + 1
    assert ToolCall("c1", "calculator", {"expression": "1+" * 8 + "1"}) in seen


async def test_openai_compatible_reasoning_content_streams_as_reasoning_apart_from_the_answer() -> None:
    # vLLM, DeepSeek and Ollama stream a reasoning model's thinking in `delta.reasoning_content`.
    thinking = [
        openai_chunk({"role": "assistant", "reasoning_content": "Two plus "}),
        openai_chunk({"reasoning_content": "two..."}),
    ]
    chunks = openai_stream(["4"])
    fake = FakeLLM([Reply(chunks=[*thinking, *chunks[1:]])])
    assert await _collect(OpenAIProvider(fake.openai(), provider=OPENAI_COMPATIBLE)) == [
        ReasoningDelta("Two plus "),
        ReasoningDelta("two..."),
        TextDelta("4"),
        Usage(10, 5),
    ]


# -- continuing a partial answer after a takeover (worker/run/recovery/takeover.py) ---------------------------

CUT = ModelRequest("m", MESSAGES, TOOLS, continue_text="The answer is ")


async def test_anthropic_continues_a_partial_answer_as_a_final_assistant_message_without_trailing_space() -> None:
    fake = FakeLLM([Reply(chunks=anthropic_stream([" forty", "-two."]))])
    provider = AnthropicProvider(fake.anthropic())
    assert provider.continues
    chunks = await _collect(provider, CUT)
    # The API refuses a final assistant message ending in whitespace: it goes without it, and the
    # model's own leading space is not doubled.
    assert fake.requests[0]["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["forty", "-two."]


async def test_anthropic_continuation_that_does_not_repeat_the_space_is_kept_as_it_is() -> None:
    fake = FakeLLM([Reply(chunks=anthropic_stream(["forty-two."]))])
    chunks = await _collect(AnthropicProvider(fake.anthropic()), CUT)
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["forty-two."]


async def test_a_continuation_closed_early_closes_its_model_stream_then() -> None:
    # A run cancelled mid-answer: the model call (and its span) ends now, in the run's task.
    closed: list[bool] = []

    async def model() -> AsyncIterator[Chunk]:
        try:
            yield TextDelta(" forty")
            yield TextDelta("-two.")
        finally:
            closed.append(True)

    continued = after_prefill(model(), " ")
    assert await anext(continued) == TextDelta("forty")
    await continued.aclose()  # type: ignore[attr-defined]
    assert closed == [True]


@pytest.mark.parametrize(
    ("continuation", "last", "extra"),
    [
        ("vllm", {"role": "assistant", "content": "The answer is "}, {"continue_final_message": True}),
        ("prefix", {"role": "assistant", "content": "The answer is ", "prefix": True}, {}),
    ],
)
async def test_openai_compatible_servers_continue_as_their_own_api_says(
    continuation: str, last: dict[str, object], extra: dict[str, object]
) -> None:
    fake = FakeLLM([Reply(chunks=openai_stream(["forty-two."]))])
    provider = OpenAIProvider(fake.openai(), provider=OPENAI_COMPATIBLE, continuation=continuation)
    assert provider.continues
    chunks = await _collect(provider, CUT)
    sent = fake.requests[0]
    assert sent["messages"][-1] == last
    assert sent.get("continue_final_message") == extra.get("continue_final_message")
    if continuation == "vllm":
        assert sent["add_generation_prompt"] is False  # vLLM refuses both at once
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["forty-two."]


async def test_openai_s_own_api_cannot_continue_so_it_is_never_sent_the_partial_answer() -> None:
    fake = FakeLLM([Reply(chunks=openai_stream(["The answer is forty-two."]))])
    provider = OpenAIProvider(fake.openai())
    assert not provider.continues
    await _collect(provider, CUT)
    assert fake.requests[0]["messages"][-1] == {"role": "user", "content": "hi"}
    assert "continue_final_message" not in fake.requests[0]


def test_every_provider_the_catalog_names_has_a_builder() -> None:
    assert set(BUILDERS) == PROVIDERS
