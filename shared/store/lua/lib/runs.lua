-- A child run ended (docs/subagents.md): its parent, if it waits for it (await_children.lua), waits for
-- one fewer; the last of those it waits for to end (or the first, for a parent with spawns it could not
-- start then: `wake_on_first`) queues it again, in its own lane (`k.parent`, the lane one up), in its
-- tenant's line at its tree's place (it held no slot while it waited, and earns one again: one tenant's
-- trees count against its caps), and it goes on, and takes its children's results.
local function child_ended(k, s, run, now_ms)
  local parent_id = run.parent_run_id
  local parent = get_run(k.runs, parent_id)
  if parent.status ~= 'waiting' or type(parent.awaiting) ~= 'table' then return end
  local left, found = {}, false
  for _, id in ipairs(parent.awaiting) do
    if id == run.run_id then found = true else left[#left + 1] = id end
  end
  if not found then return end
  if #left > 0 and not parent.wake_on_first then
    parent.awaiting = left
    redis.call('HSET', k.runs, parent_id, cjson.encode(parent))
    return
  end
  parent.status, parent.awaiting, parent.wake_on_first = 'queued', nil, nil
  redis.call('HSET', k.runs, parent_id, cjson.encode(parent))
  local lane = {}
  for name, key in pairs(s) do lane[name] = key end
  lane.session_id = string.match(s.session_id, '^(.*)/[^/]+$')
  local keys = {meta = k.parent, runs = k.runs, queue = k.queue, index = k.index}
  queue_job(keys, lane, parent_id, parent_id .. '.' .. run.run_id, now_ms, parent, true)
end

-- End the active run with its terminal event (`data` as stored; `outcome` the record's fields; `told`:
-- the data as followers are told it, if not as stored: lib/events.lua's put_event): fail the steers it
-- did not take in (`steer_failure`: why, 'run_ended' by default), record the outcome, free the session
-- and the lease, then start the next run in line or, with none, start the retention clock. Returns
-- the terminal event's seq.
local function end_run(k, s, run_id, status, event_type, data, outcome, ts, now_ms, now_s, steer_failure, told)
  fail_steers(k, s, steer_failure or 'run_ended', ts)
  local seq = add_event(k, s, event_type, data, ts, outcome.output, told)
  local run = get_run(k.runs, run_id)
  run.status = status
  run.finished_seq = seq
  run.finished_at = now_s
  run.steps, run.step_seq = nil, nil  -- (kept in the record by versions before the steps hash)
  -- Only a run that goes on replays them, and a fork inside this one (gateway/commands/branching.py):
  -- kept for it, as the steps hash was (an empty list: it recorded none), for as long as the runs.
  redis.call('HSET', k.kept_steps, run_id, cjson.encode(redis.call('HGETALL', k.steps)))
  redis.call('DEL', k.steps)
  for field, value in pairs(outcome) do run[field] = value end
  redis.call('HSET', k.runs, run_id, cjson.encode(run))
  index_troubled(k, s, run, now_ms)
  redis.call('HSET', k.meta, 'active_run', '')
  redis.call('HDEL', k.meta, 'cancel_run', 'lease_until', 'dispatch', 'dispatched_at', 'claim')
  redis.call('DEL', k.lease)
  index_lease(k, s, nil)
  local next_run = redis.call('LPOP', k.pending)
  if next_run then
    redis.call('HSET', k.meta, 'active_run', next_run)
    queue_job(k, s, next_run, next_run, now_ms)
  elseif type(run.parent_run_id) == 'string' then
    -- A child's lane is done; the session's keys are its parent's to let expire, with the session.
    if tonumber(redis.call('HINCRBY', k.root, 'children', -1)) <= 0 then redis.call('HDEL', k.root, 'children') end
    redis.call('EXPIRE', k.meta, s.ttl)
    redis.call('DEL', k.steers)
    child_ended(k, s, run, now_ms)
  elseif ARCHIVE then
    -- The archiver copies the session, then starts its retention clock (archived.lua).
    redis.call('ZADD', k.archive, now_ms, s.session_id)
  else
    redis.call('EXPIRE', k.meta, s.ttl)
    redis.call('EXPIRE', k.runs, s.ttl)
    redis.call('EXPIRE', k.kept_steps, s.ttl)
    redis.call('EXPIRE', k.events, s.ttl)
    redis.call('EXPIRE', k.steered, s.ttl + s.tombstone)  -- (a steer sent again is known while its session is)
    bury(k, s.ttl, s.tombstone)
  end
  return seq
end

-- End the active run as cancelled, without a worker: it is queued, or no worker holds it. A job
-- still waiting in its tenant's line leaves it (with SPLIT_QUEUE, the caller takes it out: the meta's
-- `unqueue` names it); after the run's end, whose first write a full Redis refuses (clock.lua's OOM).
local function cancel_unheld(k, s, run_id, reason)
  local ts, now_ms, now_s = clock()
  local owed = redis.call('HGET', k.meta, 'dispatch')
  local data = run_event(get_run(k.runs, run_id), {run_id = run_id, reason = reason})
  fence(k)  -- (its first write, which a full Redis refuses: XSETID may grow memory)
  local seq = end_run(k, s, run_id, 'cancelled', 'run.cancelled', data, {reason = reason}, ts, now_ms, now_s)
  if owed and SPLIT_QUEUE then
    redis.call('HSET', k.meta, 'unqueue', owed)
  elseif owed then
    unqueue_job(k.queue, s, owed)
  end
  return seq
end
