"""Turning an HTTP failure of a provider into a ProviderError: what it means, and whether to retry.

Messages never carry the request's headers, and authentication failures get a fixed message, so an
API key (or part of one, as some providers echo back) never reaches a log or a client.
"""

import email.utils
import time
from collections.abc import Mapping

from tokentail.worker.providers.base import ProviderError


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms`, or `Retry-After` in seconds or as an HTTP date."""
    if value := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(provider: str, model: str, status: int, message: str, headers: Mapping[str, str]) -> ProviderError:
    if status in (401, 403):
        return ProviderError(
            f"{provider} refused the credentials ({status}); check the API key", kind="authentication_error"
        )
    if status == 404:
        return ProviderError(f"{provider} does not know the model {model!r} (404): {message}", kind="model_not_found")
    if status == 429:
        return ProviderError(
            f"{provider} rate limit (429): {message}",
            kind="rate_limited",
            retryable=True,
            retry_after=retry_after_seconds(headers),
        )
    if status >= 500 or status == 408:
        return ProviderError(
            f"{provider} server error ({status}): {message}",
            kind="provider_unavailable",
            retryable=True,
            retry_after=retry_after_seconds(headers),
        )
    return ProviderError(f"{provider} rejected the request ({status}): {message}", kind="invalid_request")


def connection_error(provider: str, exc: Exception) -> ProviderError:
    return ProviderError(f"could not reach {provider}: {type(exc).__name__}", kind="connection_error", retryable=True)
