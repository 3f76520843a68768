-- Put a running run back in the queue for another worker to take over (see start_run.lua).
-- Two callers: a worker handing its run over on shutdown (it passes its lease token, which must
-- still be the lease), and a reaper finding a lease that expired (it passes '' and the lease must
-- be gone). Either way the run leaves the leases index, so it is requeued once.
--
-- A hand-over does not count against the run's attempts (three deploys must not fail a long run).
--
-- KEYS: meta, lease, leases (zset), arq job key, arq queue, runs
-- ARGV: session_id, lease_token or '', job_json, job_ttl_ms, job_id, wake_channel
-- Returns 1 if requeued, 0 if there was nothing to do.
local meta, lease, leases, job_key, queue, runs = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local session_id = ARGV[1]

if ARGV[2] ~= '' then
  if redis.call('GET', lease) ~= ARGV[2] then return 0 end
  redis.call('DEL', lease)
  redis.call('ZREM', leases, session_id)
elseif redis.call('EXISTS', lease) == 1 or redis.call('ZREM', leases, session_id) == 0 then
  return 0  -- alive after all, or another reaper got here first
end
local run_id = redis.call('HGET', meta, 'active_run')
if not run_id or run_id == '' then return 0 end
if ARGV[2] ~= '' then
  local run = cjson.decode(redis.call('HGET', runs, run_id))
  run.handovers = (run.handovers or 0) + 1
  redis.call('HSET', runs, run_id, cjson.encode(run))
end

local t = redis.call('TIME')
redis.call('SET', job_key, ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', queue, t[1] * 1000 + math.floor(t[2] / 1000), ARGV[5])
redis.call('PUBLISH', ARGV[6], run_id)
return 1
