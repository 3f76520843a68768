-- Queue a run on a session, atomically: create the session if asked, record the run, append
-- `run.queued` as the next seq, and hand the job to arq, then wake idle workers. One script, so a
-- run is never recorded without a job to run it, nor a job queued for a run that is not recorded.
-- While another run is active, `multitask` decides: `reject` refuses, `enqueue` puts the run in
-- line behind it, `interrupt` supersedes the runs in line (they end cancelled, never started) and
-- cancels the active run: at once if no worker holds it (this run then starts now), else through
-- its worker; lib/runs.lua's end_run starts the next in line when a run ends. `rollback` is `interrupt`
-- that also marks the active run `rolled_back`: the conversation leaves it out, as if never asked
-- (shared/vocabulary/records.py `transcript`). `steer` steers the active run with the input instead
-- (as `steer_id`), and records no run.
--
-- With the queue on this Redis, the run's tenant's line is bounded here (`line_bound`; 0: not here:
-- the gateway read it before, or it is not bounded), before anything is written: 'line_full'. With
-- `index.all_runs`, the run queued is listed in the console's runs index (lib/run_index.lua) in this step
-- too (`index`); without (a Redis Cluster: the index is a slot of its own), its caller lists it after.
--
-- Keys, arguments and replies: shared/store/scripts/runs.py `QueueRun`. `ended`, when `traced`: the
-- records, as they were, of the runs an interrupt ended here, whose spans the gateway writes
-- (shared/plumbing/run_spans.py). 'again': the run is recorded already, queued by this same request sent
-- before (its id comes from the request's idempotency key: gateway/access/ids.py); nothing changes.
-- With SPLIT_QUEUE, 'ok' and 'again' carry what the session's outbox holds (lib/jobs.lua's with_outbox).
local run_id, multitask = a.run_id, a.multitask
local tenant = a.tenant
if tenant == '' then tenant = redis.call('HGET', k.meta, 'tenant') or 'public' end
if tonumber(a.line_bound) > 0 then  -- a steer of the active run waits in no line: nothing to bound
  local active = redis.call('HGET', k.meta, 'active_run')
  if not (multitask == 'steer' and active and active ~= '') then
    if redis.call('ZCARD', line_key(s.admission, tenant)) >= tonumber(a.line_bound) then return reply.line_full{} end
  end
end
if redis.call('HEXISTS', k.runs, run_id) == 1 then
  return reply.again(with_outbox(k, {seq = get_run(k.runs, run_id).queued_seq, queued = 'again'}))
end

local create = a.create == '1'
if create then
  if redis.call('EXISTS', k.meta) == 1 then return reply.exists{} end
  if redis.call('EXISTS', k.gone) == 1 then return reply.gone{} end  -- (a deleted session's id, made again)
elseif redis.call('EXISTS', k.meta) == 0 then
  if redis.call('EXISTS', k.gone) == 1 then return reply.gone{} end
  if a.create ~= '2' then return reply.missing{} end
  create = true
end
if multitask == 'steer' then  -- sent again after it steered a run: it answers as it did, whenever
  local steered, steered_seq = steered_before(k, a.steer_id)
  if steered then return reply.steered{seq = steered_seq, active_run = steered} end
end
local active = redis.call('HGET', k.meta, 'active_run')
if active == '' then active = false end
if active and multitask == 'reject' then return reply.conflict{active_run = active} end
if active and multitask == 'steer' then  -- the active run takes the input in instead (lib/steers.lua)
  local outcome, seq = add_steer(k, s, active, a.steer_id, cjson.decode(a.run_json).input, tonumber(a.steer_chars),
                                 tonumber(a.most_steers), tonumber(a.most_steer_chars), a.steer_channel)
  if outcome == 'too_many' then return reply.too_many_steers{active_run = active} end
  if outcome == 'limit' then return reply.steer_limit{active_run = active} end
  return reply.steered{seq = seq, active_run = active}
end

if create then redis.call('HSET', k.meta, unpack(a.fields)) end
-- A task given push configs: its session is marked (as watch_task_push.lua marks one) in this same
-- step, so that no end of the run can come before it; and a request refused here marks nothing.
if a.task_push == '1' then redis.call('HSET', k.meta, 'a2a_push', '1') end
local ts, now_ms, now_s = clock()
local seq = add_event(k, s, 'run.queued', a.queued_data, ts)
local run = cjson.decode(a.run_json)
run.queued_seq = seq
run.queued_at = now_s
redis.call('HSET', k.runs, run_id, cjson.encode(run))
if index.all_runs ~= '' then
  index_run(index.all_runs, index.tenant_prefix .. tenant, index.run, s.session_id, run_id, index.score, index.keep,
            index.ttl)
end
-- A session with work to do never expires; the terminal event sets the TTL again. (One just made has none.)
if not create then
  redis.call('PERSIST', k.meta)
  redis.call('PERSIST', k.runs)
  redis.call('PERSIST', k.kept_steps)
  redis.call('PERSIST', k.events)
  redis.call('PERSIST', k.steered)
end

if not active then
  redis.call('HSET', k.meta, 'active_run', run_id)
  queue_job(k, s, run_id, run_id, now_ms, run)
  return reply.ok(with_outbox(k, {seq = seq, queued = 'started'}))
end
if multitask ~= 'interrupt' and multitask ~= 'rollback' then
  redis.call('RPUSH', k.pending, run_id)
  return reply.ok(with_outbox(k, {seq = seq, queued = 'pending'}))
end
local superseded = 'superseded by run ' .. run_id
local ended = {}
local function ending(ended_id)
  if a.traced == '1' then ended[#ended + 1] = redis.call('HGET', k.runs, ended_id) end
end
for _, waiting in ipairs(redis.call('LRANGE', k.pending, 0, -1)) do
  ending(waiting)
  local record = get_run(k.runs, waiting)
  record.status = 'cancelled'
  record.reason = superseded
  record.finished_seq = add_event(k, s, 'run.cancelled', cjson.encode({run_id = waiting, reason = superseded}), ts)
  redis.call('HSET', k.runs, waiting, cjson.encode(record))
end
redis.call('DEL', k.pending)
redis.call('RPUSH', k.pending, run_id)
if multitask == 'rollback' then roll_back(k.runs, active) end
if redis.call('EXISTS', k.lease) == 0 then
  ending(active)
  cancel_unheld(k, s, active, superseded)  -- which starts this run, the next in line
  return reply.ok(with_outbox(k, {seq = seq, queued = 'started', ended = ended}))
end
if redis.call('HGET', k.meta, 'cancel_run') ~= active then
  redis.call('HSET', k.meta, 'cancel_run', active)
  redis.call('PUBLISH', a.cancel_channel, active)
end
return reply.ok(with_outbox(k, {seq = seq, queued = 'pending', ended = ended}))
