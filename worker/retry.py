"""A provider stream with retries and timeouts around it.

Any chunk counts as activity, tool call fragments (`Progress`) included: a model writing a long tool
call is not silent. Before the first chunk, a retryable failure (429, 5xx, a connection error, a stream error such as
`overloaded_error`, or no first chunk within the first-token timeout) is retried with exponential
backoff and jitter, honouring `Retry-After`. After the first chunk nothing is retried: the client has
seen text, so the run fails instead, and a stream that goes silent for the idle timeout fails too.
"""

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from shared.settings import Settings
from worker.providers.base import Chunk, ModelRequest, Provider, ProviderError

# Retry-After beyond this is not waited for: the run fails and says why.
LONGEST_RETRY_AFTER = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    first_token_timeout: float = 60.0
    idle_timeout: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(
            max_retries=settings.provider_max_retries,
            base_delay=settings.provider_retry_base_seconds,
            max_delay=settings.provider_retry_max_seconds,
            first_token_timeout=settings.first_token_timeout_seconds,
            idle_timeout=settings.idle_timeout_seconds,
        )

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return float(retry_after)
        backoff = min(self.max_delay, self.base_delay * 2.0**retry)
        return backoff / 2 + random.uniform(0, backoff / 2)  # jitter: retries of many runs spread out


OnRetry = Callable[[ProviderError, float], Awaitable[None]]


async def stream_with_retries(
    provider: Provider, request: ModelRequest, policy: RetryPolicy, on_retry: OnRetry
) -> AsyncIterator[Chunk]:
    retry = 0
    while True:
        produced = False
        chunks = provider.stream(request)
        loop = asyncio.get_running_loop()
        try:
            # One timeout for the whole stream, moved on with each chunk (cheaper than a new one per
            # chunk, which a run pays per token), and put off while the chunk is handled downstream.
            limit = policy.first_token_timeout
            try:
                async with asyncio.timeout(None) as silence:
                    while True:
                        silence.reschedule(loop.time() + limit)
                        try:
                            chunk = await anext(chunks)
                        except StopAsyncIteration:
                            return
                        silence.reschedule(None)
                        produced, limit = True, policy.idle_timeout
                        yield chunk
            except TimeoutError:
                what = "went silent" if produced else "sent nothing"
                raise ProviderError(
                    f"the model {what} for {limit:g} s", kind="timeout", retryable=not produced
                ) from None
        except ProviderError as exc:
            delay = policy.delay(retry, exc.retry_after)
            if produced or not exc.retryable or retry >= policy.max_retries or delay > LONGEST_RETRY_AFTER:
                raise
            retry += 1
            await on_retry(exc, delay)
            await asyncio.sleep(delay)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
