-- The append path of a running run. Fenced: only the holder of the run's lease may write, so a
-- worker that lost its lease (stalled, partitioned, replaced) cannot interleave its text. Each
-- event takes the next per-session seq and is stored as stream entry `<seq>-0`. A terminal event
-- also closes the run: records the outcome, frees the session and the lease, and starts the
-- retention clock, or starts the next run in line (multitask `enqueue`/`interrupt`).
--
-- KEYS: meta, runs, events, lease, gone, leases (zset), pending, arq queue
-- ARGV: run_id, lease_token, maxlen, ttl_seconds, tombstone_seconds, session_id, job_ttl_ms,
--       wake_channel, arq job key prefix, job function name, append_id, then event type, data pairs
-- Returns the seq of the last event appended, or an error starting with FENCED.
--
-- Idempotent: a worker that lost the reply (Redis restarted, the connection dropped) sends the same
-- append_id again, and gets the first answer instead of a second copy of its events.
local meta, runs, events, lease, gone, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local pending, queue = KEYS[7], KEYS[8]
local run_id = ARGV[1]

if redis.call('HGET', meta, 'last_append') == ARGV[11] then
  return tonumber(redis.call('HGET', meta, 'last_append_seq'))
end
if redis.call('GET', lease) ~= ARGV[2] then
  return redis.error_reply('FENCED run ' .. run_id .. ' no longer holds its lease')
end

local outcome = {['run.completed'] = 'completed', ['run.failed'] = 'failed', ['run.cancelled'] = 'cancelled'}
local t = redis.call('TIME')
local ts = t[1] .. string.format('%06d', t[2])
local seq
for i = 12, #ARGV, 2 do
  seq = redis.call('HINCRBY', meta, 'seq', 1)
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], seq .. '-0', 'type', ARGV[i], 'data', ARGV[i + 1], 'ts', ts)
  local status = outcome[ARGV[i]]
  if status then
    local run = cjson.decode(redis.call('HGET', runs, run_id))
    local data = cjson.decode(ARGV[i + 1])
    run.status = status
    run.finished_seq = seq
    run.finished_at = tonumber(t[1]) + tonumber(t[2]) / 1e6
    run.output = data.output
    run.usage = data.usage
    run.error = data.error
    run.reason = data.reason
    redis.call('HSET', runs, run_id, cjson.encode(run))
    redis.call('HSET', meta, 'active_run', '')
    redis.call('HDEL', meta, 'cancel_run')
    redis.call('DEL', lease)
    redis.call('ZREM', leases, ARGV[6])
    local next_run = redis.call('LPOP', pending)
    if next_run then
      -- The job of the next run in line, in arq's layout (see shared/jobs.py).
      local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
      local job = cjson.encode({t = cjson.null, f = ARGV[10], a = {ARGV[6], next_run}, k = {}, et = now_ms})
      redis.call('HSET', meta, 'active_run', next_run)
      -- The job key is built here: arq's keys carry no hash tag, so this script is single-node only.
      redis.call('SET', ARGV[9] .. next_run, job, 'PX', ARGV[7])
      redis.call('ZADD', queue, now_ms, next_run)
      redis.call('PUBLISH', ARGV[8], next_run)
    else
      redis.call('EXPIRE', meta, ARGV[4])
      redis.call('EXPIRE', runs, ARGV[4])
      redis.call('EXPIRE', events, ARGV[4])
      redis.call('SET', gone, '1', 'EX', ARGV[4] + ARGV[5])
    end
  end
end
redis.call('HSET', meta, 'last_append', ARGV[11], 'last_append_seq', seq)
return seq
