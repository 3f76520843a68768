-- Heartbeat: push the lease's deadline back, only for its holder, and tell it about a cancel.
-- The holder renews even after its deadline passed (Redis was out of reach): until a reaper has
-- taken the lease away, the run is still its own.
-- KEYS: lease, meta, then the leases index unless SPLIT_QUEUE   ARGV: lease_token, lease_ms, run_id, session_id
-- Returns 0 if the lease is lost, 1 if renewed, 2 if renewed and a cancel of this run is pending.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local _, now_ms = clock()
redis.call('HSET', KEYS[2], 'lease_until', now_ms + tonumber(ARGV[2]))
if not SPLIT_QUEUE then redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[2]), ARGV[4]) end
if redis.call('HGET', KEYS[2], 'cancel_run') == ARGV[3] then return 2 end
return 1
