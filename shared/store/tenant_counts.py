"""The counts that bound a tenant's use and are kept by plain commands, not scripts: the child runs
its runs start a minute (worker/run/children.py), and the renewals and give-backs of its streams'
slots (gateway/access/limits.py). The counts that scripts keep (runs a minute, fork bytes an hour, a
slot's take) have their contracts in shared/store/scripts/limits.py.

Each command touches one key, so the sessions' Redis may be a Cluster: redis-py's pipelines send each
key's commands to its own node.
"""

from collections.abc import Iterable, Mapping

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.store.keys import Keys

SPAWNS_KEPT_SECONDS = 120  # a minute's count outlives its minute (Keys.spawns)


async def count_spawn(redis: AnyRedis, key: str) -> int:
    """Count one more child started in a tenant's minute (`Keys.spawns`); the minute's count with it."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, SPAWNS_KEPT_SECONDS)
        count, _ = await pipe.execute()
    return int(count)


async def uncount_spawn(redis: AnyRedis, key: str) -> None:
    """Take back a count of `count_spawn` (its child did not start after all)."""
    await redis.decr(key)


async def give_back_slots(redis: AnyRedis, keys: Keys, given_back: Mapping[str, Mapping[str, str | None]]) -> None:
    """Remove stream slots from their sets, all in one round trip: tenant -> slot id -> the session of
    the stream token that held it (its own set's), or None (an API key's: the tenant's set only)."""
    async with redis.pipeline(transaction=False) as pipe:
        for tenant, slot_ids in given_back.items():
            if slot_ids:
                pipe.zrem(keys.tenant_streams(tenant), *slot_ids)
            for slot_id, token in slot_ids.items():
                if token is not None:
                    pipe.zrem(keys.token_streams(tenant, token), slot_id)
        await pipe.execute()


async def renew_slots(
    redis: AnyRedis, keys: Keys, held: Iterable[tuple[str, str, str | None]], expiry_ms: int, ttl_ms: int
) -> None:
    """Push back to `expiry_ms` the slots still held, (slot id, tenant, token's session or None) each,
    in the sets that hold them (never adding one given back meanwhile), and those sets' own expiry."""
    async with redis.pipeline(transaction=False) as pipe:
        for slot_id, tenant, token in held:
            slot_keys = [keys.tenant_streams(tenant)]
            if token is not None:
                slot_keys.append(keys.token_streams(tenant, token))
            for key in slot_keys:
                pipe.zadd(key, {slot_id: expiry_ms}, xx=True)
                pipe.pexpire(key, ttl_ms)
        await pipe.execute()
