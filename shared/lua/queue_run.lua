-- Queue a run on a session, atomically: create the session if asked, record the run, append
-- `run.queued` as the next seq, and hand the job to arq (its job key and queue entry), then wake
-- idle workers. One script, so a run is never recorded without a job to run it, nor a job queued
-- for a run that is not recorded. While another run is active, `multitask` decides: `reject`
-- refuses, `enqueue` puts the run in line behind it, `interrupt` asks the active run to cancel and
-- supersedes the runs in line (they end cancelled, never started); append.lua starts the next in
-- line when a run ends.
--
-- KEYS: meta, runs, events, gone, arq job key, arq queue, pending
-- ARGV: run_id, run_json, multitask, maxlen, queued_data_json, job_json, job_ttl_ms,
--       wake_channel, create ('1' or '0'), cancel_channel, then session fields as name, value pairs
-- Returns {'ok', seq, 'started'|'pending'} | {'missing'} | {'gone'} | {'exists'} | {'conflict', active_run_id}
local meta, runs, events, gone, job_key, queue = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local pending = KEYS[7]
local run_id = ARGV[1]

if ARGV[9] == '1' then
  if redis.call('EXISTS', meta) == 1 then return {'exists'} end
  for i = 11, #ARGV, 2 do redis.call('HSET', meta, ARGV[i], ARGV[i + 1]) end
elseif redis.call('EXISTS', meta) == 0 then
  if redis.call('EXISTS', gone) == 1 then return {'gone'} end
  return {'missing'}
end

local active = redis.call('HGET', meta, 'active_run')
if active == '' then active = false end
if active and ARGV[3] == 'reject' then return {'conflict', active} end

local t = redis.call('TIME')
local ts = t[1] .. string.format('%06d', t[2])
local seq = redis.call('HINCRBY', meta, 'seq', 1)

local run = cjson.decode(ARGV[2])
run.queued_seq = seq
run.queued_at = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('HSET', runs, run_id, cjson.encode(run))
redis.call('XADD', events, 'MAXLEN', '~', ARGV[4], seq .. '-0', 'type', 'run.queued', 'data', ARGV[5], 'ts', ts)
-- A session with work to do never expires; the terminal event sets the TTL again.
redis.call('PERSIST', meta)
redis.call('PERSIST', runs)
redis.call('PERSIST', events)

if active then
  if ARGV[3] == 'interrupt' then
    for _, waiting in ipairs(redis.call('LRANGE', pending, 0, -1)) do
      local record = cjson.decode(redis.call('HGET', runs, waiting))
      local cancelled_seq = redis.call('HINCRBY', meta, 'seq', 1)
      local data = cjson.encode({run_id = waiting, reason = 'superseded by run ' .. run_id})
      redis.call('XADD', events, 'MAXLEN', '~', ARGV[4], cancelled_seq .. '-0', 'type', 'run.cancelled', 'data', data, 'ts', ts)
      record.status = 'cancelled'
      record.reason = 'superseded by run ' .. run_id
      record.finished_seq = cancelled_seq
      redis.call('HSET', runs, waiting, cjson.encode(record))
    end
    redis.call('DEL', pending)
    redis.call('RPUSH', pending, run_id)
    if redis.call('HGET', meta, 'cancel_run') ~= active then
      redis.call('HSET', meta, 'cancel_run', active)
      redis.call('PUBLISH', ARGV[10], active)
    end
  else
    redis.call('RPUSH', pending, run_id)
  end
  return {'ok', seq, 'pending'}
end

redis.call('HSET', meta, 'active_run', run_id)
redis.call('SET', job_key, ARGV[6], 'PX', ARGV[7])
redis.call('ZADD', queue, t[1] * 1000 + math.floor(t[2] / 1000), run_id)
redis.call('PUBLISH', ARGV[8], run_id)
return {'ok', seq, 'started'}
