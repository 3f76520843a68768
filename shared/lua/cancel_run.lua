-- Cancel the active run. A run no worker holds (still queued, picked up by a worker that died
-- before starting it, or waiting for a takeover) ends here and now with `run.cancelled`; a held
-- run is marked and its worker told, which stops the model and writes `run.cancelled` itself (or
-- learns of it at its next renewal, if the message is missed). Asking twice changes nothing.
--
-- KEYS, ARGV: as lib.lua's session_context, then ARGV[10] cancel_channel, ARGV[11] reason
-- Returns {'signalled', run_id} | {'cancelled', run_id} | {'idle'} | {'missing'} | {'gone'}
local k, s = session_context()
if redis.call('EXISTS', k.meta) == 0 then
  if redis.call('EXISTS', k.gone) == 1 then return {'gone'} end
  return {'missing'}
end
local run_id = redis.call('HGET', k.meta, 'active_run')
if not run_id or run_id == '' then return {'idle'} end
if redis.call('EXISTS', k.lease) == 0 then
  cancel_unheld(k, s, run_id, ARGV[11])
  return {'cancelled', run_id}
end
if redis.call('HGET', k.meta, 'cancel_run') ~= run_id then
  redis.call('HSET', k.meta, 'cancel_run', run_id)
  redis.call('PUBLISH', ARGV[10], run_id)
end
return {'signalled', run_id}
