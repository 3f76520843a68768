"""Each tenant's webhook: the URL its new sessions report to, and the secret that signs them."""

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from tokentail.shared.keys import Keys
from tokentail.shared.webhook_messages import new_secret


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
