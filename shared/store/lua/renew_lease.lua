-- Heartbeat: push the lease's deadline back, only for its holder, and tell it about a cancel or
-- steers waiting (in case it missed their notifications).
-- The holder renews even after its deadline passed (Redis was out of reach): until a reaper has
-- taken the lease away, the run is still its own.
-- Keys and arguments: shared/store/scripts/runs.py `RenewLease`.
-- Returns 0 if the lease is lost, 1 if renewed, 2 if renewed and a cancel of this run is pending,
-- 3 if renewed and steers wait.
if redis.call('GET', k.lease) ~= a.lease_token then return 0 end
local _, now_ms = clock()
local deadline = now_ms + tonumber(a.lease_ms)
redis.call('HSET', k.meta, 'lease_until', deadline)
if not SPLIT_QUEUE then redis.call('ZADD', k.index, deadline, a.session_id) end
if redis.call('HGET', k.meta, 'cancel_run') == a.run_id then return 2 end
if redis.call('EXISTS', k.steers) == 1 then return 3 end
return 1
