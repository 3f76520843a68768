-- Heartbeat: extend the lease only if this worker still holds it, and tell it about a cancel.
-- KEYS: lease, leases (zset), meta   ARGV: lease_token, lease_ms, session_id, run_id
-- Returns 0 if the lease is lost, 1 if renewed, 2 if renewed and a cancel of this run is pending.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]), ARGV[3])
if redis.call('HGET', KEYS[3], 'cancel_run') == ARGV[4] then return 2 end
return 1
