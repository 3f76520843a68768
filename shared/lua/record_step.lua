-- Record the result of one step of the active run (worker/context.py `RunContext.step`), under its
-- lease: a worker that takes the run over replays it instead of doing it again. Kept in the session's
-- steps hash, apart from the run's record (which every script acting on the run decodes: a step costs
-- its own size, not the run's), until the run ends or starts over (lib.lua's end_run, start_run.lua).
-- Beside the steps, by keys that no step key (`<name>#<n>`) can be: `seq`, the session's last event
-- id at the last step (what an agent that redoes what followed its last step keeps; the worker
-- flushed what it streamed before the step), and `bytes`, the steps' total size, bounded.
-- KEYS: steps, lease, meta   ARGV: run_id, lease_token, step key, value (JSON), max total bytes
-- Returns the steps' total size, or {'too_large', total it would be} (nothing written).
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return redis.error_reply('FENCED run ' .. ARGV[1] .. ' no longer holds its lease')
end
local total = tonumber(redis.call('HGET', KEYS[1], 'bytes') or 0) - redis.call('HSTRLEN', KEYS[1], ARGV[3]) + #ARGV[4]
if total > tonumber(ARGV[5]) then return {'too_large', total} end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4], 'seq', redis.call('HGET', KEYS[3], 'seq'), 'bytes', total)
return total
