-- Heartbeat: push the lease's deadline back, only for its holder, and tell it about a cancel.
-- The holder renews even after its deadline passed (Redis was out of reach): until a reaper has
-- taken the lease away, the run is still its own.
-- KEYS: lease, leases (zset), meta   ARGV: lease_token, lease_ms, session_id, run_id
-- Returns 0 if the lease is lost, 1 if renewed, 2 if renewed and a cancel of this run is pending.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local _, now_ms = clock()
redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[2]), ARGV[3])
if redis.call('HGET', KEYS[3], 'cancel_run') == ARGV[4] then return 2 end
return 1
