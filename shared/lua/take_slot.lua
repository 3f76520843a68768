-- Take one of a tenant's stream slots, counted across all gateways, after removing the slots of the
-- tenant's given back but not yet removed.
-- Keys and arguments: shared/scripts/limits.py `TakeSlot`.
-- Returns 1 if taken, 0 if the tenant holds `limit` live slots already. A gateway that dies leaves
-- its slots behind; they lapse after `ttl_ms` because nobody renews them.
local now = tonumber(a.now_ms)
if #a.given_back > 0 then
  redis.call('ZREM', k.slots, unpack(a.given_back))
end
redis.call('ZREMRANGEBYSCORE', k.slots, '-inf', now)
if redis.call('ZCARD', k.slots) >= tonumber(a.limit) then
  return 0
end
redis.call('ZADD', k.slots, now + tonumber(a.ttl_ms), a.slot_id)
redis.call('PEXPIRE', k.slots, a.ttl_ms)
return 1
