"""Each tenant's webhook: the URL its new sessions report to, the secret that signs them, and the
format of their bodies (tokentail's, or OpenAI's webhook events: shared/features/webhook_messages.py)."""

from typing import Literal, NamedTuple

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from tokentail.shared.features.webhook_messages import new_secret
from tokentail.shared.store.keys import Keys

WebhookFormat = Literal["tokentail", "openai"]


class TenantWebhook(NamedTuple):
    url: str | None  # None: none set
    secret: str
    format: WebhookFormat


class TenantWebhooks:
    """Each tenant's webhook URL and signing secret (a hash beside its other keys). The secret is
    made the first time it is needed and kept when the URL is removed, so receivers keep verifying."""

    def __init__(self, redis: "Redis | RedisCluster", keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, tenant: str) -> TenantWebhook:
        key = self._keys.tenant_webhook(tenant)
        url, secret, format_ = await self._redis.hmget(key, ["url", "secret", "format"])  # type: ignore[misc]
        if secret is None:
            await self._redis.hsetnx(key, "secret", new_secret())  # type: ignore[misc]
            url, secret, format_ = await self._redis.hmget(key, ["url", "secret", "format"])  # type: ignore[misc]
        openai = format_ == b"openai"
        return TenantWebhook(url.decode() if url else None, secret.decode(), "openai" if openai else "tokentail")

    async def url(self, tenant: str) -> str | None:
        raw = await self._redis.hget(self._keys.tenant_webhook(tenant), "url")  # type: ignore[misc]
        return raw.decode() if raw else None

    async def set_url(
        self, tenant: str, url: str, rotate_secret: bool = False, format_: WebhookFormat = "tokentail"
    ) -> TenantWebhook:
        """Set the URL and the format (and a new secret, with `rotate_secret`)."""
        key = self._keys.tenant_webhook(tenant)
        if rotate_secret:
            await self._redis.hset(key, "secret", new_secret())  # type: ignore[misc]
        await self._redis.hset(key, mapping={"url": url, "format": format_})  # type: ignore[misc]
        return await self.get(tenant)

    async def remove_url(self, tenant: str) -> None:
        await self._redis.hdel(self._keys.tenant_webhook(tenant), "url")  # type: ignore[misc]
