-- Create a session with no run yet; like a finished one, it expires if left unused. Its tombstone
-- (which names the owner) outlives it, so an expired id answers 410.
-- KEYS: meta, gone   ARGV: ttl_seconds, tombstone_seconds, tenant, then session fields as name, value pairs
-- Returns 1 if made, 0 if it exists already (a chat id used before), -1 if it is gone.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local ttl = tonumber(ARGV[1])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl + tonumber(ARGV[2]))
return 1
