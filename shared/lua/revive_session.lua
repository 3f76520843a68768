-- Bring back a session that Redis forgot (its hot retention ran out) from the archive's copy, so
-- that a new turn can be queued on it: its meta, with `seq` and `archived` at its last id (its
-- events go on from there; readers find the earlier ones in the archive), and its runs, with the
-- hot retention until a run is queued (queue_run.lua keeps it then). Nothing if it exists again.
-- KEYS: meta, runs   ARGV: last_event_id, ttl_seconds, the number of meta field values, then meta
--                          field, value pairs, then run_id, run JSON pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = 3 + tonumber(ARGV[3])
for i = 4, fields, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'archived', ARGV[1], 'active_run', '')
for i = fields + 1, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return 1
