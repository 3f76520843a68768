-- The run asks a person (worker/context.py: ctx.ask) and waits without a worker: fenced by the
-- lease like an append, it appends `input.required`, records the question (the worker passes the
-- whole `asked` list, which it alone writes while it holds the lease), and gives the lease up. The
-- session stays busy with this run (status `waiting`); an answer queues it again (answer.lua). A
-- question with a deadline keeps the session in the leases index until then, so a reaper ends it
-- when it expires (requeue_run.lua). A cancel asked for while the worker was on its way here wins.
--
-- KEYS, ARGV: as lib.lua's session_context, then ARGV[10] run_id, ARGV[11] lease_token,
--   ARGV[12] the input.required event's data, ARGV[13] asked (JSON, kept opaque), ARGV[14] input_id,
--   ARGV[15] the deadline (Redis ms) or '', ARGV[16] expect (lib.lua's check_holder), and for a
--   question that takes a default answer when it expires: ARGV[17] the answers then (JSON), ARGV[18]
--   the input.received event's data then
-- Returns {'waiting', seq} | {'cancel'}, or an error starting with FENCED or LOST.
local k, s = session_context()
local run_id, token = ARGV[10], ARGV[11]
local refused = check_holder(k, run_id, token, tonumber(redis.call('HGET', k.meta, 'seq') or 0), ARGV[16])
if refused then return refused end
if redis.call('HGET', k.meta, 'cancel_run') == run_id then return {'cancel'} end

local ts = clock()
local seq = add_event(k, s, 'input.required', ARGV[12], ts)
local run = get_run(k.runs, run_id)
local deadline = tonumber(ARGV[15])
run.status = 'waiting'
run.asked = ARGV[13]
run.waiting_for = ARGV[14]
run.waiting_until = deadline
if ARGV[17] then
  run.on_expiry_answers = ARGV[17]
  run.on_expiry_received = ARGV[18]
end
redis.call('HSET', k.runs, run_id, cjson.encode(run))
redis.call('DEL', k.lease)
redis.call('HDEL', k.meta, 'lease_until')
index_lease(k, s, deadline)
return {'waiting', seq}
