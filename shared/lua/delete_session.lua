-- Delete a session and take away its run's lease: a worker still running it is fenced at its next
-- append, and a reaper finds nothing to take over. The tombstone names the owner, and the gateways
-- following the session are told (`gone` on its channel) and end their streams now.
-- With an archive, the session goes in the archive index, due now: the archiver deletes the archive's
-- copy too (the gateway deletes it at once; this is for a gateway that failed to).
-- Keys and arguments: shared/scripts/sessions.py `DeleteSession`.
redis.call('DEL', k.meta, k.runs, k.events, k.lease, k.pending, k.steps, k.a2a_push)
if not SPLIT_QUEUE then redis.call('ZREM', k.index, a.session_id) end
if ARCHIVE then
  local _, now_ms = clock()
  redis.call('ZADD', k.archive, now_ms, a.session_id)
end
redis.call('SET', k.gone, a.tenant, 'EX', math.max(1, tonumber(a.tombstone)))
redis.call(PUBLISH_EVENTS, k.events, 'gone')
return 1
