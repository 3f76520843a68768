-- The archiver has the session's events up to ARGV[2] in the archive (worker/archiver.py): note it
-- (the stream may now be trimmed up to there), and if the session is idle and the archive has all
-- of it, start its retention clock in Redis (the tombstone goes with it: the archive answers for
-- the session from then on) and drop it from the archive index, unless its entry changed since the
-- claim (a run ended meanwhile: it is looked at again).
-- KEYS: meta, runs, events, gone, the archive index   ARGV: session_id, archived seq, claim score, ttl_seconds
-- Returns 'done', 'more' (events or a run to come: its entry stays) or 'gone' (no such session).
local meta, runs, events, gone, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local function settle()
  if redis.call('ZSCORE', index, ARGV[1]) == ARGV[3] then redis.call('ZREM', index, ARGV[1]) end
end
if redis.call('EXISTS', meta) == 0 then
  settle()
  return 'gone'
end
local archived = math.max(tonumber(redis.call('HGET', meta, 'archived') or 0), tonumber(ARGV[2]))
redis.call('HSET', meta, 'archived', archived)
local state = redis.call('HMGET', meta, 'seq', 'active_run')
if (state[2] or '') ~= '' or tonumber(state[1] or 0) > archived then return 'more' end
for _, key in ipairs({meta, runs, events, gone}) do redis.call('EXPIRE', key, ARGV[4]) end
settle()
return 'done'
