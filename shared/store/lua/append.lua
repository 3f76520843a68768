-- The append path of a running run that may end it, or report to its webhook (events that do
-- neither go through append_events.lua). Fenced: only the holder of the run's lease may write, so a
-- worker that lost its lease (stalled, partitioned, replaced) cannot interleave its text. Each
-- event takes the next per-session seq. A terminal event also ends the run (lib/runs.lua's end_run);
-- its `outcome` (the record's fields, JSON) travels apart from the event, so a completed run's
-- output is stored once in its record, not again in `run.completed` (readers add it back); the
-- gateways' hubs are told the event with it (`told`), as readers give it, so they read nothing.
--
-- Keys, arguments and reply: shared/store/scripts/runs.py `Append` (`expect`: see lib/seqs.lua's check_holder).
-- Returns the seq of the last event appended (and, with SPLIT_QUEUE, after a terminal event, what the
-- session's outbox holds: lib/jobs.lua's with_outbox), or an error starting with FENCED or LOST.
--
-- Idempotent: a worker that lost the reply (Redis restarted, the connection dropped) sends the same
-- append_id again, and gets the first answer instead of a second copy of its events.

-- The checks before an append, with `k` the session's keys: the seq of the first try
-- when this append went through already (sent again after its reply was lost: by the writer, or by
-- the Redis client's own retry, so even a "first" try may be a second); or nil and check_holder's
-- error; or nil, nil when the append may go ahead.
local function check_append(k, run_id, token, append_id, expect)
  local meta = redis.call('HMGET', k.meta, 'last_append', 'last_append_seq')
  if meta[1] == append_id then
    return tonumber(meta[2])
  end
  return nil, check_holder(k, run_id, token, last_seq(k), expect)
end

local run_id, token, append_id = a.run_id, a.lease_token, a.append_id

local function appended(seq)
  if a.outcome == '' then return reply.value{seq = seq} end
  return reply.value(with_outbox(k, {seq = seq}))
end

local done, fenced = check_append(k, run_id, token, append_id, a.expect)
if fenced then return fenced end
if done then return appended(done) end

local ending = {['run.completed'] = 'completed', ['run.failed'] = 'failed', ['run.cancelled'] = 'cancelled'}
local ts, now_ms, now_s = clock()
local seq
for i = 1, #a.events, 2 do
  local event_type, data = a.events[i], a.events[i + 1]
  local status = ending[event_type]
  if status then
    local failure = a.steer_failure ~= '' and a.steer_failure or nil
    local told = a.told ~= '' and a.told or nil
    seq = end_run(k, s, run_id, status, event_type, data, cjson.decode(a.outcome), ts, now_ms, now_s, failure, told)
  else
    seq = add_event(k, s, event_type, data, ts)
  end
end
redis.call('HSET', k.meta, 'last_append', append_id, 'last_append_seq', seq)
return appended(seq)
