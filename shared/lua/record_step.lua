-- Record the result of one step of the active run (worker/context.py `RunContext.step`), under its
-- lease: a worker that takes the run over replays it instead of doing it again. Kept in the run's
-- record as JSON text (cjson would turn `[]` into `{}` and round numbers), until the run ends, with
-- the session's last event id then (`step_seq`: what an agent that redoes what followed its last
-- step keeps; the worker flushed what it streamed before the step).
-- KEYS: runs, lease, meta   ARGV: run_id, lease_token, step key, value (JSON)
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return redis.error_reply('FENCED run ' .. ARGV[1] .. ' no longer holds its lease')
end
local run = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]))
if type(run.steps) ~= 'table' then run.steps = {} end
run.steps[ARGV[3]] = ARGV[4]
run.step_seq = tonumber(redis.call('HGET', KEYS[3], 'seq'))
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(run))
return 1
