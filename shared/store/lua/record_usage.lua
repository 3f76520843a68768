-- Record what one attempt of the active run has cost so far, as its worker counts it (the providers'
-- usage reports: worker/run/usage.py), under the run's lease: an attempt that dies still counts what was
-- reported before. With it, the last event id the run wrote: the output streamed after it was not
-- reported yet (the estimate for a model call cut short starts there). Sent again, it changes nothing.
-- Keys and arguments: shared/store/scripts/runs.py `RecordUsage`.
local refused = fenced(k, a.run_id, a.lease_token)
if refused then return refused end
local run = cjson.decode(redis.call('HGET', k.runs, a.run_id))
if type(run.attempt_usage) ~= 'table' then run.attempt_usage = {} end
local usage = cjson.decode(a.usage)
usage.seq = tonumber(a.seq)
run.attempt_usage[a.attempt] = usage
redis.call('HSET', k.runs, a.run_id, cjson.encode(run))
return 1
