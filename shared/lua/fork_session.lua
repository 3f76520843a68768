-- Make a fork: a new, idle session holding another session's events up to a turn boundary, under the
-- same ids and data (and the times they were appended), the runs that had ended by then, and the
-- record its caller read from the source (shared/store.py `fork_source`). The source is read apart
-- and only the fork's keys are written here: on a Redis Cluster the two sessions' keys live in
-- different slots, and one script may touch one slot only. Like a session whose run ended, the fork
-- starts its retention clock (or, with an archive, is handed to the archiver, which starts it).
-- KEYS: meta, runs, events, gone, then the archive index with ARCHIVE
-- ARGV: session_id, ttl_seconds, tombstone_seconds, field count, then the meta's fields as name,
--       value pairs, then the run count and run id, run JSON pairs, then the events as seq, type,
--       data, ts quadruples, in order
-- Returns 1 if made, 0 if a session of that id exists already (the same request sent again with its
-- idempotency key), -1 if it is gone.
local k = {meta = KEYS[1], runs = KEYS[2], events = KEYS[3], gone = KEYS[4], archive = ARCHIVE and KEYS[#KEYS] or nil}
if redis.call('EXISTS', k.meta) == 1 then return 0 end
if redis.call('EXISTS', k.gone) == 1 then return -1 end

local ttl, tombstone = tonumber(ARGV[2]), tonumber(ARGV[3])
local at = 5
local fields = tonumber(ARGV[4])
for i = at, at + 2 * fields - 1, 2 do redis.call('HSET', k.meta, ARGV[i], ARGV[i + 1]) end
at = at + 2 * fields
local runs = tonumber(ARGV[at])
at = at + 1
for i = at, at + 2 * runs - 1, 2 do redis.call('HSET', k.runs, ARGV[i], ARGV[i + 1]) end
at = at + 2 * runs
local last = 0
for i = at, #ARGV, 4 do
  redis.call('XADD', k.events, ARGV[i] .. '-0', 'type', ARGV[i + 1], 'data', ARGV[i + 2], 'ts', ARGV[i + 3])
  last = tonumber(ARGV[i])
end
redis.call('HSET', k.meta, 'seq', last, 'active_run', '')

if ARCHIVE then
  local _, now_ms = clock()
  redis.call('ZADD', k.archive, now_ms, ARGV[1])  -- the archiver copies it, then starts its clock
else
  redis.call('EXPIRE', k.meta, ttl)
  if runs > 0 then redis.call('EXPIRE', k.runs, ttl) end
  if last > 0 then redis.call('EXPIRE', k.events, ttl) end
  bury(k, ttl, tombstone)
end
return 1
