"""Where webhooks may go: the operator's allowlist of URL prefixes (`TOKENTAIL_WEBHOOK_ALLOWED_URLS`).

A tenant sets one URL for all its sessions (`PUT /v1/webhook`), or a session names its own at
creation; either must fall under one of the allowed prefixes, so tenant input never points the
workers at an internal address. The URL is copied into the session when it is made.
"""

import re
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from tokentail.shared.vocabulary.errors import InvalidInput

MAX_URL_CHARS = 2048
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")  # control characters, space, backslash: never in a URL we post to


class WebhookNotAllowed(InvalidInput):
    pass


class _Target(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str


def _target(url: str) -> _Target:
    """The parts of an http(s) URL an allowlist compares; ValueError if it is not one, or if its
    path is not the path it would be posted to: the HTTP client resolves dot segments (`..`, also
    percent-encoded, or between encoded slashes) before posting, so a path that has any could leave
    the prefix it matched; and a control character or a space is no URL at all."""
    if _UNSAFE.search(url):
        raise ValueError("control characters, spaces or backslashes")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL")
    if {".", ".."} & set(unquote(parts.path).split("/")):
        raise ValueError("dot segments (. or ..) in the path")
    port = parts.port or (443 if parts.scheme == "https" else 80)  # parts.port raises on a bad port
    return _Target(parts.scheme, parts.hostname.lower(), port, parts.path or "/")


class WebhookPolicy:
    """The operator's allowlist: URL prefixes (scheme, host and port exact, then a path prefix)."""

    def __init__(self, allowed_urls: list[str]) -> None:
        self._allowed = [_target(url) for url in allowed_urls]

    @property
    def enabled(self) -> bool:
        return bool(self._allowed)

    def allows(self, url: str) -> bool:
        try:
            target = _target(url)
        except ValueError:
            return False
        return any(target[:3] == allowed[:3] and _under(target.path, allowed.path) for allowed in self._allowed)

    def check(self, url: str) -> str:
        """`url` if webhooks may go there, else WebhookNotAllowed (422) saying why."""
        if not self.enabled:
            raise WebhookNotAllowed("webhooks are off on this deployment (TOKENTAIL_WEBHOOK_ALLOWED_URLS is empty)")
        if len(url) > MAX_URL_CHARS:
            raise WebhookNotAllowed(f"a webhook URL has at most {MAX_URL_CHARS} characters")
        try:
            _target(url)
        except ValueError as exc:
            raise WebhookNotAllowed(f"webhook URL {url!r}: {exc}") from None
        if not self.allows(url):
            raise WebhookNotAllowed(f"webhook URL {url!r} is not under any URL the operator allows")
        return url


def _under(path: str, prefix: str) -> bool:
    """`/hooks/a` is under `/hooks/` and `/hooks`, but `/hooksmith` is under neither."""
    return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")
