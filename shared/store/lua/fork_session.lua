-- Make a fork: a new, idle session holding another session's events up to a turn boundary, under the
-- same ids and data (and the times they were appended), the runs that had ended by then, and the
-- record its caller read from the source (shared/store/reads.py `fork_source`). The source is read apart
-- and only the fork's keys are written here: on a Redis Cluster the two sessions' keys live in
-- different slots, and one script may touch one slot only. Like a session whose run ended, the fork
-- starts its retention clock (or, with an archive, is handed to the archiver, which starts it).
-- Keys and arguments: shared/store/scripts/sessions.py `ForkSession`.
-- Returns 1 if made, 0 if a session of that id exists already (the same request sent again with its
-- idempotency key), -1 if it is gone.
if redis.call('EXISTS', k.meta) == 1 then return 0 end
if redis.call('EXISTS', k.gone) == 1 then return -1 end

local ttl, tombstone = tonumber(a.ttl), tonumber(a.tombstone)
for i = 1, #a.fields, 2 do redis.call('HSET', k.meta, a.fields[i], a.fields[i + 1]) end
for i = 1, #a.runs, 2 do redis.call('HSET', k.runs, a.runs[i], a.runs[i + 1]) end
local last = 0
local events = a.events
for i = 1, #events, 4 do
  redis.call('XADD', k.events, events[i] .. '-0', 'type', events[i + 1], 'data', events[i + 2], 'ts', events[i + 3])
  last = tonumber(events[i])
end
redis.call('HSET', k.meta, 'seq', last, 'active_run', '')

if ARCHIVE then
  local _, now_ms = clock()
  redis.call('ZADD', k.archive, now_ms, a.session_id)  -- the archiver copies it, then starts its clock
else
  redis.call('EXPIRE', k.meta, ttl)
  if #a.runs > 0 then redis.call('EXPIRE', k.runs, ttl) end
  if last > 0 then redis.call('EXPIRE', k.events, ttl) end
  bury(k, ttl, tombstone)
end
return 1
