-- Delete a session and take away its run's lease: a worker still running it is fenced at its next
-- append (its stream is gone, which the per-token path's NOMKSTREAM finds: lib/seqs.lua, the fence),
-- and a reaper finds nothing to take over. The tombstone names the owner, and the gateways
-- following the session are told (`gone` on its channel) and end their streams now.
-- With an archive, the session goes in the archive index, due now: the archiver deletes the archive's
-- copy too (the gateway deletes it at once; this is for a gateway that failed to).
-- Returns, when `traced`, the records of the runs it ends (the active run, then those in line), as
-- they were: the gateway writes their spans (shared/plumbing/run_spans.py).
-- Keys and arguments: shared/store/scripts/sessions.py `DeleteSession` (`j`: the job settings, as push_job.lua's).
local ended = {}
if a.traced == '1' then
  local runs = redis.call('LRANGE', k.pending, 0, -1)
  local active = redis.call('HGET', k.meta, 'active_run')
  if active and active ~= '' then table.insert(runs, 1, active) end
  for _, run_id in ipairs(runs) do
    local record = redis.call('HGET', k.runs, run_id)
    if record then ended[#ended + 1] = record end
  end
end
local owed = redis.call('HGET', k.meta, 'dispatch')
redis.call('DEL', k.meta, k.runs, k.events, k.lease, k.pending, k.steps, k.steers, k.steered, k.kept_steps, k.task_push)
if not SPLIT_QUEUE then
  redis.call('ZREM', k.index, a.session_id)
  -- Its run's job, if it still waits in its tenant's line, frees its place (with the queue apart, it
  -- stays there until its turn, when its worker finds the session gone).
  if owed then unqueue_job(k.queue, j, owed) end
end
if ARCHIVE then
  local _, now_ms = clock()
  redis.call('ZADD', k.archive, now_ms, a.session_id)
end
redis.call('SET', k.gone, a.tenant, 'EX', math.max(1, tonumber(a.tombstone)))
redis.call(PUBLISH_EVENTS, k.events, 'gone')
return ended
