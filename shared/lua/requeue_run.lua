-- Put a running run back in the queue for another worker to take over (see start_run.lua).
-- Two callers: a worker handing its run over on shutdown (it passes its lease token, which must
-- still be the lease; a hand-over does not count against the run's attempts), and a reaper that
-- found the run's lease deadline passed (it passes ''). Either way the lease is taken away and the
-- run leaves the leases index, so it is requeued once. A reaper also clears entries with nothing
-- to take over (the session was deleted, the run ended): however many there are, none can hide a
-- run that needs a new worker.
--
-- KEYS, ARGV: as lib.lua's session_context, then ARGV[9] lease_token or '', ARGV[10] a random job
-- id suffix (arq refuses a job id it still remembers: each requeue is a job of its own)
-- Returns 'requeued' | 'renewed' (the holder renewed in time) | 'cleared' | 'not_holder'
local k, s = session_context()
local token = ARGV[9]
local _, now_ms = clock()
if token ~= '' then
  if redis.call('GET', k.lease) ~= token then return 'not_holder' end
else
  local deadline = redis.call('ZSCORE', k.leases, s.session_id)
  if not deadline then return 'cleared' end  -- another reaper got here first
  if tonumber(deadline) > now_ms then return 'renewed' end
end
local run_id = redis.call('HGET', k.meta, 'active_run')
redis.call('ZREM', k.leases, s.session_id)
if not run_id or run_id == '' then return 'cleared' end
redis.call('DEL', k.lease)
if token ~= '' then
  local run = get_run(k.runs, run_id)
  run.handovers = (run.handovers or 0) + 1
  redis.call('HSET', k.runs, run_id, cjson.encode(run))
end
queue_job(s, s.session_id, run_id, run_id .. '.' .. ARGV[10], now_ms)
return 'requeued'
