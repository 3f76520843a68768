-- A worker claims the session's active run: take the lease, count the attempt, append `run.started`.
-- A run whose last worker died or handed it over (status `running`, no lease) is taken over: the
-- attempt goes up and `run.retrying` comes first, so clients drop that attempt's partial text. A
-- duplicate delivery of a job finds the lease taken, or the run over, and does nothing.
--
-- KEYS: meta, runs, events, lease, leases (zset)
-- ARGV: session_id, run_id, lease_token, lease_ms, maxlen, max_attempts
-- Returns {'ok', seq, run_json, verdict} with verdict '' (run it), 'cancel' (a cancel is pending:
-- end it cancelled) or 'exhausted' (too many attempts: end it failed); or {'inactive'} | {'leased'}
-- | {'not_running', status}
local meta, runs, events, lease, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local session_id, run_id = ARGV[1], ARGV[2]

if redis.call('HGET', meta, 'active_run') ~= run_id then return {'inactive'} end
if redis.call('EXISTS', lease) == 1 then return {'leased'} end
local run = cjson.decode(redis.call('HGET', runs, run_id))
if run.status ~= 'queued' and run.status ~= 'running' then return {'not_running', run.status} end

local t = redis.call('TIME')
local ts = t[1] .. string.format('%06d', t[2])
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)

local verdict = ''
if redis.call('HGET', meta, 'cancel_run') == run_id then
  verdict = 'cancel'
elseif run.attempt - (run.handovers or 0) >= tonumber(ARGV[6]) then
  verdict = 'exhausted'
end

redis.call('SET', lease, ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', leases, now_ms + tonumber(ARGV[4]), session_id)
if verdict ~= '' then
  -- The lease lets the worker write the terminal event through the usual fenced append.
  return {'ok', redis.call('HGET', meta, 'seq'), redis.call('HGET', runs, run_id), verdict}
end

if run.status == 'running' then
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local data = cjson.encode({run_id = run_id, attempt = run.attempt + 1, reason = 'the worker running attempt ' .. run.attempt .. ' stopped'})
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], seq .. '-0', 'type', 'run.retrying', 'data', data, 'ts', ts)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
run.status = 'running'
run.attempt = run.attempt + 1
run.started_seq = seq
run.started_at = tonumber(t[1]) + tonumber(t[2]) / 1e6
local run_json = cjson.encode(run)
redis.call('HSET', runs, run_id, run_json)
local data = cjson.encode({run_id = run_id, attempt = run.attempt})
redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], seq .. '-0', 'type', 'run.started', 'data', data, 'ts', ts)
return {'ok', seq, run_json, verdict}
