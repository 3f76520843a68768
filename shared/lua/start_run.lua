-- A worker claims the session's active run: take the lease, count the attempt, append
-- `run.started`. A duplicate delivery of the job (arq may run a job twice) finds the lease taken
-- or the run no longer queued, and does nothing.
--
-- KEYS: meta, runs, events, lease
-- ARGV: run_id, lease_token, lease_ms, maxlen
-- Returns {'ok', seq, run_json} | {'inactive'} | {'leased'} | {'not_queued', status}
local meta, runs, events, lease = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id = ARGV[1]

if redis.call('HGET', meta, 'active_run') ~= run_id then return {'inactive'} end
if redis.call('EXISTS', lease) == 1 then return {'leased'} end
local run = cjson.decode(redis.call('HGET', runs, run_id))
if run.status ~= 'queued' then return {'not_queued', run.status} end

local t = redis.call('TIME')
local ts = t[1] .. string.format('%06d', t[2])
local seq = redis.call('HINCRBY', meta, 'seq', 1)

run.status = 'running'
run.attempt = run.attempt + 1
run.started_seq = seq
run.started_at = tonumber(t[1]) + tonumber(t[2]) / 1e6
local run_json = cjson.encode(run)
redis.call('HSET', runs, run_id, run_json)
redis.call('SET', lease, ARGV[2], 'PX', ARGV[3])
local data = cjson.encode({run_id = run_id, attempt = run.attempt})
redis.call('XADD', events, 'MAXLEN', '~', ARGV[4], seq .. '-0', 'type', 'run.started', 'data', data, 'ts', ts)
return {'ok', seq, run_json}
