local function get_run(runs, run_id)
  return cjson.decode(redis.call('HGET', runs, run_id))
end

-- Mark a run rolled back (multitask `rollback`, LangGraph's): cancelled, and left out of the conversation.
local function roll_back(runs, run_id)
  local run = get_run(runs, run_id)
  run.rolled_back = true
  redis.call('HSET', runs, run_id, cjson.encode(run))
end

-- The data of one of a run's `run.*` events: `fields` and, for a child run (docs/subagents.md), its
-- parent's id (a session's own runs' events leave it out).
local function run_event(run, fields)
  if type(run.parent_run_id) == 'string' then fields.parent_run_id = run.parent_run_id end
  return cjson.encode(fields)
end

-- The tombstone names the owner, so another tenant is told 404 for a gone session, as for none.
local function bury(k, ttl, tombstone)
  local tenant = redis.call('HGET', k.meta, 'tenant') or 'public'
  redis.call('SET', k.gone, tenant, 'EX', ttl + tombstone)
end
