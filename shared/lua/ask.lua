-- The run asks a person (worker/context.py: ctx.ask) and waits without a worker: fenced by the
-- lease like an append, it appends `input.required`, records the question (the worker passes the
-- whole `asked` list, which it alone writes while it holds the lease), and gives the lease up. The
-- session stays busy with this run (status `waiting`); an answer queues it again (answer.lua). A
-- question with a deadline keeps the session in the leases index until then, so a reaper ends it
-- when it expires (requeue_run.lua). A cancel asked for while the worker was on its way here wins.
--
-- Keys and arguments: shared/scripts/runs.py `Ask` (`expect`: see lib.lua's check_holder;
-- `on_expiry`: for a question that takes a default answer when it expires, the answers then (JSON)
-- and the input.received event's data then).
-- Sent again after its reply was lost, it finds its question asked (no lease, the run waiting for
-- it: an input id is the one question's), and answers as it did.
-- Replies: shared/scripts/runs.py `Ask`'s, or an error starting with FENCED or LOST.
local run_id, token = a.run_id, a.lease_token
if redis.call('EXISTS', k.lease) == 0 then
  -- Asked already, by this same call sent again after its reply was lost (shared/outage.py's ride_out)?
  local record = redis.call('HGET', k.runs, run_id)
  local run = record and cjson.decode(record)
  if run and run.status == 'waiting' and run.waiting_for == a.input_id then
    return reply.waiting{seq = last_seq(k)}
  end
end
local refused = check_holder(k, run_id, token, last_seq(k), a.expect)
if refused then return refused end
if redis.call('HGET', k.meta, 'cancel_run') == run_id then return reply.cancel{} end

local ts = clock()
local seq = add_event(k, s, 'input.required', a.event, ts)
local run = get_run(k.runs, run_id)
local deadline = tonumber(a.deadline)
run.status = 'waiting'
run.asked = a.asked
run.waiting_for = a.input_id
run.waiting_until = deadline
if #a.on_expiry > 0 then
  run.on_expiry_answers = a.on_expiry[1]
  run.on_expiry_received = a.on_expiry[2]
end
redis.call('HSET', k.runs, run_id, cjson.encode(run))
redis.call('DEL', k.lease)
redis.call('HDEL', k.meta, 'lease_until')
index_lease(k, s, deadline)
return reply.waiting{seq = seq}
