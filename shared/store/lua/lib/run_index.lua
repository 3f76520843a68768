-- The console's runs index (shared/store/run_index.py): a run just queued is listed in all runs' and
-- in its tenant's sorted sets (`<sid> <run id>` -> `score`, when it was queued, in µs; NX: a request
-- sent again lists its run once, at its first time), each kept to its newest `keep`; and its session
-- is kept under the run's id for `ttl` seconds. index_run.lua lists a run so after its queueing (on a
-- Redis Cluster, where the index's hash tag is a slot of its own); queue_run.lua, in its own step.
local function index_run(all_runs, tenant_runs, run_key, session_id, run_id, score, keep, ttl)
  local member = session_id .. ' ' .. run_id
  keep = tonumber(keep)
  for _, key in ipairs({all_runs, tenant_runs}) do
    if redis.call('ZADD', key, 'NX', score, member) == 1 and redis.call('ZCARD', key) > keep then
      redis.call('ZREMRANGEBYRANK', key, 0, -keep - 1)
    end
  end
  redis.call('SET', run_key, session_id, 'EX', ttl)
end
