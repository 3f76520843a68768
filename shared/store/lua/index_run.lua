-- List a run just queued in the runs index (shared/store/run_index.py): in all runs' and in its tenant's
-- sorted sets (NX: a request sent again lists its run once, at its first time), each kept to its newest
-- `keep`; and its session under the run's id, kept `ttl` seconds. One command, on the path of every run
-- queued. Its keys share one hash tag: one Redis Cluster slot holds the whole index.
-- Keys and arguments: shared/store/scripts/sessions.py `IndexRun`.
local member = a.session_id .. ' ' .. a.run_id
local keep = tonumber(a.keep)
for _, key in ipairs({k.runs, k.tenant_runs}) do
  if redis.call('ZADD', key, 'NX', a.score, member) == 1 and redis.call('ZCARD', key) > keep then
    redis.call('ZREMRANGEBYRANK', key, 0, -keep - 1)
  end
end
redis.call('SET', k.run, a.session_id, 'EX', a.ttl)
return 1
