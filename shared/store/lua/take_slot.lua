-- Take one of a tenant's stream slots, counted across all gateways, after removing the slots of the
-- tenant's given back but not yet removed; for a stream token's request, also one of the token's
-- (its session's: `token_limit`, 0 for an API key's, whose `token_slots` is left alone), so that one
-- browser's token holds a bounded share of its tenant's streams.
-- Keys and arguments: shared/store/scripts/limits.py `TakeSlot`.
-- Returns 1 if taken, 0 if the tenant holds `limit` live slots already, -1 if the token holds
-- `token_limit`. A gateway that dies leaves its slots behind; they lapse after `ttl_ms` because
-- nobody renews them.
local now, ttl = tonumber(a.now_ms), tonumber(a.ttl_ms)
local keys = {k.slots}
if tonumber(a.token_limit) > 0 then keys[2] = k.token_slots end
for _, key in ipairs(keys) do
  if #a.given_back > 0 then redis.call('ZREM', key, unpack(a.given_back)) end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
end
-- The token's first: one at its own bound (its tenant's, when that is lower) is told so.
if keys[2] and redis.call('ZCARD', keys[2]) >= tonumber(a.token_limit) then return -1 end
if redis.call('ZCARD', k.slots) >= tonumber(a.limit) then return 0 end
for _, key in ipairs(keys) do
  redis.call('ZADD', key, now + ttl, a.slot_id)
  redis.call('PEXPIRE', key, ttl)
end
return 1
