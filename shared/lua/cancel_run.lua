-- Ask for the active run to be cancelled: mark it, and tell the worker running it. The worker
-- writes `run.cancelled` (a queued run's worker does so as soon as it picks the job up, and a
-- taken-over run's new worker does so instead of starting it). Asking twice changes nothing.
--
-- KEYS: meta, gone   ARGV: cancel_channel
-- Returns {'signalled', run_id} | {'idle'} | {'missing'} | {'gone'}
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 0 then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'gone'} end
  return {'missing'}
end
local run_id = redis.call('HGET', meta, 'active_run')
if not run_id or run_id == '' then return {'idle'} end
if redis.call('HGET', meta, 'cancel_run') ~= run_id then
  redis.call('HSET', meta, 'cancel_run', run_id)
  redis.call('PUBLISH', ARGV[1], run_id)
end
return {'signalled', run_id}
