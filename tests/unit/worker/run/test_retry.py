"""Retries before the first token, timeouts, and nothing retried once text has been sent."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.servers.fake_llm import FakeLLM, Reply, anthropic_error, anthropic_stream, openai_stream
from tokentail.worker.providers.anthropic_messages import AnthropicProvider
from tokentail.worker.providers.base import Chunk, Message, ModelRequest, ProviderError, TextDelta
from tokentail.worker.providers.openai_chat import OpenAIProvider
from tokentail.worker.run.retry import RetryPolicy, stream_with_retries

REQUEST = ModelRequest("m", [Message("user", "hi")])
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, first_token_timeout=0.5, idle_timeout=0.3)


async def _run(provider: OpenAIProvider | AnthropicProvider, policy: RetryPolicy = FAST) -> tuple[str, list[str]]:
    retries: list[str] = []

    async def on_retry(error: ProviderError, delay: float) -> None:
        retries.append(f"{error.kind} {delay:g}")

    chunks: list[Chunk] = [c async for c in stream_with_retries(provider, REQUEST, policy, on_retry)]
    return "".join(c.text for c in chunks if isinstance(c, TextDelta)), retries


async def test_429_then_success_honours_retry_after() -> None:
    fake = FakeLLM([Reply(status=429, headers={"retry-after": "0.05"}), Reply(chunks=openai_stream(["ok"]))])
    text, retries = await _run(OpenAIProvider(fake.openai()))
    assert text == "ok" and retries == ["rate_limited 0.05"] and len(fake.requests) == 2


async def test_server_errors_back_off_and_retry() -> None:
    replies = [Reply(status=500), Reply(status=502), Reply(chunks=openai_stream(["fine"]))]
    fake = FakeLLM(replies)
    text, retries = await _run(OpenAIProvider(fake.openai()))
    assert text == "fine" and [r.split()[0] for r in retries] == ["provider_unavailable"] * 2


async def test_an_overloaded_error_event_before_any_text_is_retried() -> None:
    first = anthropic_stream([])[:1] + [anthropic_error("overloaded_error")]
    fake = FakeLLM([Reply(chunks=first), Reply(chunks=anthropic_stream(["after"]))])
    text, retries = await _run(AnthropicProvider(fake.anthropic()))
    assert text == "after" and len(retries) == 1


async def test_a_stall_before_the_first_token_is_retried() -> None:
    fake = FakeLLM([Reply(chunks=openai_stream(["late"]), stall_after=0), Reply(chunks=openai_stream(["on time"]))])
    text, retries = await _run(OpenAIProvider(fake.openai()))
    assert text == "on time" and retries[0].startswith("timeout")


async def test_a_stall_after_text_fails_without_retrying() -> None:
    fake = FakeLLM([Reply(chunks=openai_stream(["a", "b", "c"]), stall_after=3), Reply(chunks=openai_stream(["x"]))])
    with pytest.raises(ProviderError, match="went silent") as info:
        await _run(OpenAIProvider(fake.openai()))
    assert info.value.kind == "timeout" and len(fake.requests) == 1


async def test_authentication_errors_are_not_retried() -> None:
    fake = FakeLLM([Reply(status=401), Reply(chunks=openai_stream(["x"]))])
    with pytest.raises(ProviderError, match="credentials"):
        await _run(OpenAIProvider(fake.openai()))
    assert len(fake.requests) == 1


async def test_retries_stop_after_the_limit() -> None:
    fake = FakeLLM([Reply(status=503) for _ in range(4)])
    with pytest.raises(ProviderError, match="server error"):
        await _run(OpenAIProvider(fake.openai()))
    assert len(fake.requests) == 4  # the first try and three retries


def test_backoff_grows_with_jitter_and_respects_its_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    for retry, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8)]):
        delays = {policy.delay(retry, None) for _ in range(50)}
        assert all(low <= d <= high for d in delays) and len(delays) > 1
    assert policy.delay(0, 7.5) == 7.5


class _Paced:
    """A provider whose chunks come `gap` seconds apart, after which it goes silent for `stall`."""

    provider = "scripted"
    continues = False

    def __init__(self, chunks: int, gap: float, stall: float = 0.0) -> None:
        self.chunks, self.gap, self.stall = chunks, gap, stall

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        for i in range(self.chunks):
            if i:
                await asyncio.sleep(self.gap)
            yield TextDelta(str(i))
        await asyncio.sleep(self.stall)


async def _texts(provider: _Paced, policy: RetryPolicy, downstream: float = 0.0) -> str:
    async def on_retry(error: ProviderError, delay: float) -> None:
        raise AssertionError("nothing here is retried")

    text = ""
    async for chunk in stream_with_retries(provider, REQUEST, policy, on_retry):
        text += chunk.text if isinstance(chunk, TextDelta) else ""
        await asyncio.sleep(downstream)
    return text


async def test_a_steady_stream_longer_than_the_idle_timeout_is_not_cut() -> None:
    # Its gaps a tenth of the idle timeout, so that a busy machine's pause between two reads does not
    # make one a silence; in all, 0.55 s (the sleeps' least), longer than the timeout however fast it is.
    policy = RetryPolicy(first_token_timeout=5, idle_timeout=0.5)
    assert await _texts(_Paced(chunks=12, gap=0.05), policy) == "".join(str(i) for i in range(12))


async def test_time_spent_downstream_does_not_count_as_silence() -> None:
    policy = RetryPolicy(first_token_timeout=5, idle_timeout=0.3)
    assert await _texts(_Paced(chunks=3, gap=0.0), policy, downstream=0.4) == "012"


async def test_a_stall_after_the_first_chunk_times_out_after_the_idle_timeout_not_the_first_token_one() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ProviderError, match="went silent for 0.1 s"):
        await _texts(_Paced(chunks=2, gap=0.0, stall=10), RetryPolicy(first_token_timeout=5, idle_timeout=0.1))
    assert loop.time() - started < 1
