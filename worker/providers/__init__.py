"""Model providers, built once per worker process and shared by its runs.

The SDKs are imported when a provider is first used: together they take seconds to import, which
would otherwise delay every worker's start (and so every takeover by a freshly started worker).
That import happens in a thread, so the worker's other runs go on meanwhile (on the event loop it
stalled them all, for seconds on a busy box, and the loop watchdog took the run for the culprit).
May import the worker's tools/ (a model is offered tools) and shared/'s plumbing and vocabulary:

base                what every provider speaks: a request in, a stream of chunks out
openai_chat         OpenAI's chat completions, and every server that speaks them
anthropic_messages  Anthropic's messages
scripted            the offline `scripted` model: deterministic text from the input, at a chosen pace
errors              a provider's HTTP failure as a ProviderError: what it means, whether to retry
"""

import asyncio
import os
from collections.abc import Callable
from urllib.parse import urlsplit

from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.catalog import ANTHROPIC, OPENAI, OPENAI_COMPATIBLE, SCRIPTED, parse_model
from tokentail.worker.providers.base import InvalidRequest, Provider, ProviderError
from tokentail.worker.providers.scripted import ScriptedProvider


class Providers:
    def __init__(self, settings: Settings, overrides: dict[str, Provider] | None = None) -> None:
        self._settings = settings
        self._built: dict[str, Provider] = dict(overrides or {})
        self._building = asyncio.Lock()  # each provider is built once, however many runs ask at once

    async def resolve(self, model: str) -> tuple[Provider, str]:
        """The provider for a `model` string, and the model name to pass it."""
        try:
            ref = parse_model(model)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if ref.provider not in self._built:
            async with self._building:
                if ref.provider not in self._built:
                    self._built[ref.provider] = await asyncio.to_thread(self._build, ref.provider)
        return self._built[ref.provider], ref.name

    def _build(self, provider: str) -> Provider:
        build = BUILDERS.get(provider)
        if build is None:
            raise InvalidRequest(f"unknown provider {provider!r}")
        return build(self._settings)


# How each provider of shared/vocabulary/catalog.py's is built, from the worker's settings. The SDKs' own
# retries are off: tokentail retries, and only before the first token.


def _scripted(settings: Settings) -> Provider:
    return ScriptedProvider()


def _openai(settings: Settings) -> Provider:
    if not os.environ.get("OPENAI_API_KEY"):
        raise ProviderError("OPENAI_API_KEY is not set on the worker", kind="authentication_error")
    import openai

    from tokentail.worker.providers.openai_chat import OpenAIProvider

    return OpenAIProvider(openai.AsyncOpenAI(max_retries=0))


def _anthropic(settings: Settings) -> Provider:
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise ProviderError("ANTHROPIC_API_KEY is not set on the worker", kind="authentication_error")
    import anthropic

    from tokentail.worker.providers.anthropic_messages import AnthropicProvider

    return AnthropicProvider(anthropic.AsyncAnthropic(max_retries=0))


def _openai_compatible(settings: Settings) -> Provider:
    import openai

    from tokentail.worker.providers.openai_chat import OpenAIProvider

    base_url = settings.openai_compatible_base_url
    if not base_url:
        raise InvalidRequest("set TOKENTAIL_OPENAI_COMPATIBLE_BASE_URL to use openai-compatible models")
    key = settings.openai_compatible_api_key
    client = openai.AsyncOpenAI(base_url=base_url, api_key=key.get_secret_value() if key else "unused", max_retries=0)
    # Only the host: a URL may carry credentials, and this name reaches clients in messages.
    name = f"the OpenAI-compatible server at {urlsplit(base_url).hostname}"
    continuation = settings.openai_compatible_continue
    return OpenAIProvider(client, name=name, provider=OPENAI_COMPATIBLE, continuation=continuation)


BUILDERS: dict[str, Callable[[Settings], Provider]] = {
    SCRIPTED: _scripted,
    OPENAI: _openai,
    ANTHROPIC: _anthropic,
    OPENAI_COMPATIBLE: _openai_compatible,
}
