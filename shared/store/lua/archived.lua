-- The archiver has the session's events up to `archived` in the archive (worker/process/archiver.py): note it
-- (the stream may now be trimmed up to there), and if the session is idle and the archive has all
-- of it, start its retention clock in Redis (the tombstone goes with it: the archive answers for
-- the session from then on) and drop it from the archive index, unless its entry changed since the
-- claim (a run ended meanwhile: it is looked at again).
-- Keys and arguments: shared/store/scripts/checks.py `Archived`.
-- Returns 'done', 'more' (events or a run to come: its entry stays) or 'gone' (no such session).
local function settle()
  if redis.call('ZSCORE', k.index, a.session_id) == a.claim then redis.call('ZREM', k.index, a.session_id) end
end
if redis.call('EXISTS', k.meta) == 0 then
  settle()
  return 'gone'
end
local archived = math.max(tonumber(redis.call('HGET', k.meta, 'archived') or 0), tonumber(a.archived))
redis.call('HSET', k.meta, 'archived', archived)
if (redis.call('HGET', k.meta, 'active_run') or '') ~= '' or last_seq(k) > archived then return 'more' end
for _, key in ipairs({k.meta, k.runs, k.events, k.gone, k.steered, k.kept_steps}) do redis.call('EXPIRE', key, a.ttl) end
settle()
return 'done'
