-- Create a session with no run yet; like a finished one, it expires if left unused. Its tombstone
-- (which names the owner) outlives it, so an expired id answers 410.
-- Keys and arguments: shared/store/scripts/sessions.py `CreateSession`.
-- Returns 1 if made, 0 if it exists already (a chat id used before), -1 if it is gone.
if redis.call('EXISTS', k.meta) == 1 then return 0 end
if redis.call('EXISTS', k.gone) == 1 then return -1 end
local ttl = tonumber(a.ttl)
for i = 1, #a.fields, 2 do redis.call('HSET', k.meta, a.fields[i], a.fields[i + 1]) end
redis.call('EXPIRE', k.meta, ttl)
redis.call('SET', k.gone, a.tenant, 'EX', ttl + tonumber(a.tombstone))
return 1
