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

from tokentail.shared.plumbing.settings import Settings
from tokentail.worker.providers.base import Chunk, ModelRequest, Provider, ProviderError
from tokentail.worker.run import traces

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


class _Silence:
    """Times out `timeout` once the stream has been read for `limit` seconds without a chunk; the
    time a chunk spends downstream (the run appending it, running a tool) does not count.

    Per chunk it only notes the time: one timer per stream, which when it fires either expires the
    timeout or is set again for the deadline of the current read. Moving the timeout itself per
    chunk (`Timeout.reschedule`, a timer cancelled and another made) was an eighth of the worker's
    CPU, paid per token."""

    def __init__(self, timeout: asyncio.Timeout, limit: float) -> None:
        self._timeout = timeout
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._since: float | None = None  # when the current read began; None while downstream
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> "_Silence":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def reading(self) -> None:
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._since + self._limit, self._check)

    def handling(self) -> None:
        self._since = None

    def limit(self, limit: float) -> None:
        """A new limit (the first chunk came): the timer is set for it from now on."""
        self._limit = limit
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        now = self._loop.time()
        if self._since is not None and now - self._since >= self._limit:
            self._timer = None
            self._timeout.reschedule(now)  # expires: the read is cancelled, then TimeoutError
        else:
            since = now if self._since is None else self._since  # downstream: it starts again later
            self._timer = self._loop.call_at(since + self._limit, self._check)


async def stream_with_retries(
    provider: Provider, request: ModelRequest, policy: RetryPolicy, on_retry: OnRetry
) -> AsyncIterator[Chunk]:
    retry = 0
    while True:
        produced = False
        chunks = traces.chat(provider, request)  # in its span, with traces on
        try:
            limit = policy.first_token_timeout
            try:
                async with asyncio.timeout(None) as silence, _Silence(silence, limit) as watch:
                    while True:
                        watch.reading()
                        try:
                            chunk = await anext(chunks)
                        except StopAsyncIteration:
                            return
                        watch.handling()
                        if not produced:
                            produced, limit = True, policy.idle_timeout
                            watch.limit(limit)
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
