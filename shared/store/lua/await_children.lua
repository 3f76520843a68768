-- A run waits for its children (worker/run/children.py) without a worker, as a run waits for answers
-- (ask.lua): fenced by its lease, it gives the lease up, its status `waiting` and `awaiting` the
-- children of `a.children` still going. The last of them to end queues it again (lib/runs.lua's
-- child_ended: in its tenant's line, at its tree's place), and any worker goes on with it; with `wake_on_first` (it has spawns it could not start
-- yet: spawn.lua's 'full'), the first of them. Children that all ended already (or, with
-- `wake_on_first`, one did) queue it again here ('queued'). A cancel asked for while the worker was
-- on its way here wins ('cancel').
--
-- Sent again after its reply was lost, it finds the lease given up and the run waiting (or queued),
-- and answers as it did.
--
-- Keys and arguments: shared/store/scripts/children.py `AwaitChildren`.
-- Replies: its `AwaitChildren`'s, or an error starting with FENCED or LOST.
local run_id = a.run_id
if redis.call('EXISTS', k.lease) == 0 then
  local run = get_run(k.runs, run_id)
  if run.status == 'waiting' and type(run.awaiting) == 'table' and #run.awaiting > 0 then return reply.waiting{} end
  if run.status == 'queued' then return reply.queued{} end
end
local refused = check_holder(k, run_id, a.lease_token, last_seq(k), a.expect)
if refused then return refused end
if redis.call('HGET', k.meta, 'cancel_run') == run_id then return reply.cancel{} end

local run = get_run(k.runs, run_id)
local going = {}
for _, id in ipairs(a.children) do
  local status = get_run(k.runs, id).status
  if status == 'queued' or status == 'running' or status == 'waiting' then going[#going + 1] = id end
end
local _, now_ms = clock()
redis.call('DEL', k.lease)
redis.call('HDEL', k.meta, 'lease_until')
index_lease(k, s, nil)
local first = a.wake_on_first == '1'
if #going == 0 or (first and #going < #a.children) then
  run.status = 'queued'
  redis.call('HSET', k.runs, run_id, cjson.encode(run))
  queue_job(k, s, run_id, run_id .. '.w' .. a.job_suffix, now_ms, run, true)
  return reply.queued{}
end
run.status, run.awaiting, run.wake_on_first = 'waiting', going, first or nil
redis.call('HSET', k.runs, run_id, cjson.encode(run))
return reply.waiting{}
