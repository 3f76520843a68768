-- Make a fork: a new session holding another session's events up to one of them, under the same ids
-- and data (and the times they were appended), the records and kept steps of the runs that had ended
-- by then, and the record its caller read from the source (shared/store/reads.py `fork_source`). The
-- source is read apart and only the fork's keys are written here: on a Redis Cluster the two
-- sessions' keys live in different slots, and one script may touch one slot only.
--
-- At a turn's end (no `run_id`) the fork is idle: like a session whose run ended, it starts its
-- retention clock (or, with an archive, is handed to the archiver, which starts it). At an event
-- inside a run (`run_id`, whose record the caller made as it stood then), that run goes on in the
-- fork (`go_on`): it is the fork's active run, marked `forked_at` (start_run.lua starts it as a fork,
-- decided as a takeover is), with the steps it had recorded by then, the runs in line behind it after
-- it, and its job queued (`job_id`; listed in the runs index here when it shares this Redis). Its tree's
-- runs going then (`children`) go on with it, each in its lane as a spawn makes one (spawn.lua: the
-- lane's meta, its job at its tree's place, counted among the session's children going) and marked
-- `forked_at` too; a parent replays its spawns, finds them going and waits for them. Or it ends there
-- (not `go_on`): it, its tree's runs going and the runs in line behind it end cancelled (`reason`).
-- Keys and arguments: shared/store/scripts/sessions.py `ForkSession`.
-- Returns 1 if made, 0 if a session of that id exists already (the same request sent again with its
-- idempotency key), -1 if it is gone.
if redis.call('EXISTS', k.meta) == 1 then return 0 end
if redis.call('EXISTS', k.gone) == 1 then return -1 end

local ttl, tombstone = tonumber(s.ttl), tonumber(s.tombstone)
for i = 1, #a.fields, 2 do redis.call('HSET', k.meta, a.fields[i], a.fields[i + 1]) end
for i = 1, #a.runs, 2 do redis.call('HSET', k.runs, a.runs[i], a.runs[i + 1]) end
for i = 1, #a.kept_steps, 2 do redis.call('HSET', k.kept_steps, a.kept_steps[i], a.kept_steps[i + 1]) end
local last = 0
local events = a.events
for i = 1, #events, 4 do
  redis.call('XADD', k.events, events[i] .. '-0', 'type', events[i + 1], 'data', events[i + 2], 'ts', events[i + 3])
  last = tonumber(events[i])
end
redis.call('HSET', k.meta, 'seq', last, 'active_run', '')
local ts, now_ms, now_s = clock()

if a.run_id ~= '' and a.go_on == '1' then
  local run = get_run(k.runs, a.run_id)
  run.forked_at = tonumber(a.at)
  redis.call('HSET', k.runs, a.run_id, cjson.encode(run))
  for i = 1, #a.steps, 2 do redis.call('HSET', k.steps, a.steps[i], a.steps[i + 1]) end
  for _, waiting in ipairs(a.pending) do redis.call('RPUSH', k.pending, waiting) end
  redis.call('HSET', k.meta, 'active_run', a.run_id)
  local owner = redis.call('HMGET', k.meta, 'tenant', 'user')
  for i = 1, #a.children, 6 do
    local child_id, lane_meta = a.children[i], a.children[i + 2]
    local child = get_run(k.runs, child_id)
    child.forked_at = tonumber(a.at)
    redis.call('HSET', k.runs, child_id, cjson.encode(child))
    local steps = cjson.decode(a.children[i + 5])
    for j = 1, #steps, 2 do redis.call('HSET', a.children[i + 3], steps[j], steps[j + 1]) end
    redis.call('HSET', lane_meta, 'active_run', child_id, 'tenant', owner[1] or 'public')
    if owner[2] then redis.call('HSET', lane_meta, 'user', owner[2]) end
    redis.call('HINCRBY', k.meta, 'children', 1)
    local lane = {}
    for name, value in pairs(s) do lane[name] = value end
    lane.session_id = a.children[i + 1]
    queue_job({meta = lane_meta, runs = k.runs, queue = k.queue, index = k.index}, lane, child_id, a.children[i + 4],
              now_ms, child, true)
  end
  if index.all_runs ~= '' then
    local tenant = redis.call('HGET', k.meta, 'tenant') or 'public'
    index_run(index.all_runs, index.tenant_prefix .. tenant, index.run, s.session_id, a.run_id, index.score,
              index.keep, index.ttl)
  end
  queue_job(k, s, a.run_id, a.job_id, now_ms, run)  -- (a session with work to do has no TTL)
  return 1
end
if a.run_id ~= '' then
  -- Children before their parents (the deepest last spawned first), then the run, then those in line.
  -- Each keeps what it had recorded by then (one in line, nothing): a fork of this fork inside it replays it.
  local ending, kept = {}, {[a.run_id] = cjson.encode(a.steps)}
  for i = #a.children - 5, 1, -6 do
    ending[#ending + 1] = a.children[i]
    kept[a.children[i]] = a.children[i + 5]
  end
  ending[#ending + 1] = a.run_id
  for _, waiting in ipairs(a.pending) do ending[#ending + 1] = waiting end
  for _, run_id in ipairs(ending) do
    local run = get_run(k.runs, run_id)
    run.status, run.reason, run.finished_at = 'cancelled', a.reason, now_s
    run.finished_seq = add_event(k, s, 'run.cancelled', run_event(run, {run_id = run_id, reason = a.reason}), ts)
    redis.call('HSET', k.runs, run_id, cjson.encode(run))
    redis.call('HSET', k.kept_steps, run_id, kept[run_id] or '[]')
  end
end

if ARCHIVE then
  redis.call('ZADD', k.archive, now_ms, s.session_id)  -- the archiver copies it, then starts its clock
else
  redis.call('EXPIRE', k.meta, ttl)
  redis.call('EXPIRE', k.runs, ttl)
  redis.call('EXPIRE', k.kept_steps, ttl)
  if redis.call('EXISTS', k.events) == 1 then redis.call('EXPIRE', k.events, ttl) end
  bury(k, ttl, tombstone)
end
return 1
