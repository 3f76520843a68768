-- Create a session with no run yet; like a finished one, it expires if left unused. Its tombstone
-- (which names the owner) outlives it, so an expired id answers 410.
-- KEYS: meta, gone   ARGV: ttl_seconds, tombstone_seconds, tenant, then session fields as name, value pairs
local ttl = tonumber(ARGV[1])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl + tonumber(ARGV[2]))
return 1
