"""Webhooks: where they may go, how they are signed, and what they carry.

A tenant sets one URL for all its sessions (`PUT /v1/webhook`), or a session names its own at
creation; either must fall under one of the operator's allowed URL prefixes
(`TOKENTAIL_WEBHOOK_ALLOWED_URLS`), so tenant input never points the workers at an internal
address. The URL is copied into the session when it is made: from then on, each event a webhook
reports is kept, in the same step as the event (lib.lua), until a worker delivers it
(worker/webhooks.py).

Signatures follow the Standard Webhooks scheme (standardwebhooks.com), which libraries in most
languages verify: headers `webhook-id` (the idempotency id, `<session_id>.<event_id>`, the same on
every retry), `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,` + base64 of
HMAC-SHA256 over `<id>.<timestamp>.<body>`), with the tenant's secret `whsec_<base64>`.
"""

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared.errors import InvalidInput
from shared.keys import Keys
from shared.store import with_output

HOOKED_EVENTS = ("run.completed", "run.failed", "run.cancelled", "input.required")
SECRET_PREFIX = "whsec_"
MAX_URL_CHARS = 2048


class WebhookNotAllowed(InvalidInput):
    pass


class _Target(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str


def _target(url: str) -> _Target:
    """The parts of an http(s) URL an allowlist compares; ValueError if it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL")
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


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header of a delivery."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Hook(NamedTuple):
    """One event a webhook reports, as its session's `hooks` list keeps it (lib.lua's add_hook)."""

    session_id: str
    raw: bytes  # the list entry as stored: a deliverer removes exactly this one once delivered
    seq: int
    ts_ms: int
    type: str
    data: bytes
    url: str
    tenant: str
    output: str | None

    @classmethod
    def parse(cls, session_id: str, raw: bytes) -> "Hook":
        entry = json.loads(raw)
        ts = str(entry["ts"])
        return cls(
            session_id,
            raw,
            int(entry["seq"]),
            int(ts[:-3]),
            entry["type"],
            entry["data"].encode(),
            entry["url"],
            entry["tenant"],
            entry.get("output"),
        )

    @property
    def webhook_id(self) -> str:
        return f"{self.session_id}.{self.seq}"

    def body(self) -> bytes:
        data = self.data
        if self.type == "run.completed" and self.output is not None:
            data = with_output(data, self.output)
        payload: dict[str, Any] = {
            "type": self.type,
            "timestamp": self.ts_ms / 1000,
            "session_id": self.session_id,
            "event_id": str(self.seq),
            "data": json.loads(data),
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class TenantWebhooks:
    """Each tenant's webhook URL and signing secret (a hash beside its other keys). The secret is
    made the first time it is needed and kept when the URL is removed, so receivers keep verifying."""

    def __init__(self, redis: "Redis | RedisCluster", keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, tenant: str) -> tuple[str | None, str]:
        """The tenant's URL (None: none set) and secret."""
        key = self._keys.tenant_webhook(tenant)
        url, secret = await self._redis.hmget(key, ["url", "secret"])  # type: ignore[misc]
        if secret is None:
            await self._redis.hsetnx(key, "secret", new_secret())  # type: ignore[misc]
            url, secret = await self._redis.hmget(key, ["url", "secret"])  # type: ignore[misc]
        return (url.decode() if url else None), secret.decode()

    async def url(self, tenant: str) -> str | None:
        raw = await self._redis.hget(self._keys.tenant_webhook(tenant), "url")  # type: ignore[misc]
        return raw.decode() if raw else None

    async def secret(self, tenant: str) -> str:
        return (await self.get(tenant))[1]

    async def set_url(self, tenant: str, url: str, rotate_secret: bool = False) -> str:
        """Set the URL; the secret (a new one with `rotate_secret`)."""
        key = self._keys.tenant_webhook(tenant)
        if rotate_secret:
            await self._redis.hset(key, "secret", new_secret())  # type: ignore[misc]
        await self._redis.hset(key, "url", url)  # type: ignore[misc]
        return await self.secret(tenant)

    async def remove_url(self, tenant: str) -> None:
        await self._redis.hdel(self._keys.tenant_webhook(tenant), "url")  # type: ignore[misc]
