-- Bring back a session that Redis forgot (its hot retention ran out) from the archive's copy, so
-- that a new turn can be queued on it: its meta, with `seq` and `archived` at its last id (its
-- events go on from there; readers find the earlier ones in the archive), and its runs, with the
-- hot retention until a run is queued (queue_run.lua keeps it then). Nothing if it exists again.
-- Keys and arguments: shared/store/scripts/sessions.py `ReviveSession`.
if redis.call('EXISTS', k.meta) == 1 then return 0 end
for i = 1, #a.fields, 2 do redis.call('HSET', k.meta, a.fields[i], a.fields[i + 1]) end
redis.call('HSET', k.meta, 'seq', a.last_event_id, 'archived', a.last_event_id, 'active_run', '')
for i = 1, #a.runs, 2 do redis.call('HSET', k.runs, a.runs[i], a.runs[i + 1]) end
redis.call('EXPIRE', k.meta, a.ttl)
if redis.call('EXISTS', k.runs) == 1 then redis.call('EXPIRE', k.runs, a.ttl) end
return 1
