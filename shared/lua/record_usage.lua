-- Record what one attempt of the active run has cost so far, as its worker counts it (the providers'
-- usage reports: worker/usage.py), under the run's lease: an attempt that dies still counts what was
-- reported before. With it, the session's last event id: the output streamed after it was not
-- reported yet (the estimate for a model call cut short starts there). Sent again, it changes nothing.
-- KEYS: runs, lease, meta   ARGV: run_id, lease_token, attempt, usage (JSON object of counts)
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return redis.error_reply('FENCED run ' .. ARGV[1] .. ' no longer holds its lease')
end
local run = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]))
if type(run.attempt_usage) ~= 'table' then run.attempt_usage = {} end
local usage = cjson.decode(ARGV[4])
usage.seq = tonumber(redis.call('HGET', KEYS[3], 'seq'))
run.attempt_usage[ARGV[3]] = usage
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(run))
return 1
