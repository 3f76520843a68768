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

-- The console's index of runs in trouble (Keys.admin_troubled): a run that ends failed, or after a
-- takeover (its attempt past 1), is listed where it ends (end_run: its worker's last append, the reaper's
-- expiry, attempts exhausted, a question expired) in every tenant's set and its own, `<sid> <run id>`
-- -> when it ended (µs), so the overview reads them there and no number of runs queued pushes them out.
-- Each set keeps the newest TROUBLED_KEPT, none older than the sessions' ttl (their sessions are gone).
-- On a Redis Cluster (`k.troubled` nil: the index is a slot of its own) nothing is listed here.
local TROUBLED_KEPT = 1000
local function index_troubled(k, s, run, now_ms)
  if not k.troubled or (run.status ~= 'failed' and (tonumber(run.attempt) or 0) < 2) then return end
  local member = string.match(s.session_id, '^[^/]+') .. ' ' .. run.run_id  -- (a child: its session's id)
  local tenant = redis.call('HGET', k.root, 'tenant') or 'public'
  local oldest = (now_ms - tonumber(s.ttl) * 1000) * 1000
  for _, key in ipairs({k.troubled, k.troubled .. ':' .. tenant}) do
    redis.call('ZADD', key, now_ms * 1000, member)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. oldest)
    if redis.call('ZCARD', key) > TROUBLED_KEPT then redis.call('ZREMRANGEBYRANK', key, 0, -TROUBLED_KEPT - 1) end
  end
end
