-- Take one of a tenant's stream slots, counted across all gateways.
-- KEYS[1]: the tenant's slots (sorted set: slot id -> when it lapses, ms)
-- ARGV: slot id, limit, now (ms), ttl (ms), then slots of the tenant's given back but not yet removed
-- Returns 1 if taken, 0 if the tenant holds `limit` live slots already. A gateway that dies leaves
-- its slots behind; they lapse after `ttl` because nobody renews them.
local now = tonumber(ARGV[3])
if #ARGV > 4 then
  redis.call('ZREM', KEYS[1], unpack(ARGV, 5))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
