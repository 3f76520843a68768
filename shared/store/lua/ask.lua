-- The run asks a person one question or several at once (worker/run/context.py: ctx.ask; concurrent calls
-- join one batch) and waits without a worker: fenced by the lease like an append, it appends one
-- `input.required` per question, records them (the worker passes the whole `asked` list, which it alone
-- writes while it holds the lease) and the ones it waits for, and gives the lease up. The session stays
-- busy with this run (status `waiting`); the answers queue it again once each question has one
-- (answer.lua). While a question has a deadline, the session stays in the leases index until the
-- earliest, so a reaper ends it when it expires (requeue_run.lua). A cancel asked for while the worker
-- was on its way here wins.
--
-- Keys and arguments: shared/store/scripts/runs.py `Ask` (`expect`: see lib/seqs.lua's check_holder; per question,
-- its event's data, input id, deadline (ms, or '') and default answer (JSON text, or '' to fail the run
-- when it expires)).
-- Sent again after its reply was lost, it finds its questions asked (no lease, the run waiting with the
-- same `asked`), and answers as it did.
-- Replies: shared/store/scripts/runs.py `Ask`'s, or an error starting with FENCED or LOST.
local run_id, token = a.run_id, a.lease_token
if redis.call('EXISTS', k.lease) == 0 then
  -- Asked already, by this same call sent again after its reply was lost (shared/connections/outage.py's ride_out)?
  local record = redis.call('HGET', k.runs, run_id)
  local run = record and cjson.decode(record)
  if run and run.status == 'waiting' and run.asked == a.asked then
    return reply.waiting{seq = last_seq(k)}
  end
end
local refused = check_holder(k, run_id, token, last_seq(k), a.expect)
if refused then return refused end
if redis.call('HGET', k.meta, 'cancel_run') == run_id then return reply.cancel{} end

local ts = clock()
local run = get_run(k.runs, run_id)
local seq
run.expiry = {}
for i, input_id in ipairs(a.input_ids) do
  seq = add_event(k, s, 'input.required', a.events[i], ts)
  run.expiry[input_id] = {at = tonumber(a.deadlines[i]), default = a.defaults[i] ~= '' and a.defaults[i] or nil}
end
run.status = 'waiting'
run.asked = a.asked
-- One question: its id, as a record was before several could be open (a gateway or worker of the
-- version before reads it during a rolling upgrade); several: the list.
run.waiting_for = #a.input_ids == 1 and a.input_ids[1] or a.input_ids
run.waiting_until = next_deadline(run)
redis.call('HSET', k.runs, run_id, cjson.encode(run))
redis.call('DEL', k.lease)
redis.call('HDEL', k.meta, 'lease_until')
index_lease(k, s, run.waiting_until)
return reply.waiting{seq = seq}
