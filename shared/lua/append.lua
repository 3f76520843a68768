-- The append path of a running run that may end it, or report to its webhook (events that do
-- neither go through append_events.lua). Fenced: only the holder of the run's lease may write, so a
-- worker that lost its lease (stalled, partitioned, replaced) cannot interleave its text. Each
-- event takes the next per-session seq. A terminal event also ends the run (lib.lua's end_run);
-- its `outcome` (the record's fields, JSON) travels apart from the event, so a completed run's
-- output is stored once in its record, not again in `run.completed` (readers add it back).
--
-- KEYS, ARGV: as lib.lua's session_context, then
--   ARGV[10] run_id, ARGV[11] lease_token, ARGV[12] append_id, ARGV[13] outcome_json (or ''),
--   ARGV[14] expect (lib.lua's check_holder), then event type, data pairs
-- Returns the seq of the last event appended, or an error starting with FENCED or LOST.
--
-- Idempotent: a worker that lost the reply (Redis restarted, the connection dropped) sends the same
-- append_id again, and gets the first answer instead of a second copy of its events.
local k, s = session_context()
local run_id, token, append_id = ARGV[10], ARGV[11], ARGV[12]

local done, fenced = check_append(k, run_id, token, append_id, ARGV[14])
if done or fenced then return done or fenced end

local ending = {['run.completed'] = 'completed', ['run.failed'] = 'failed', ['run.cancelled'] = 'cancelled'}
local ts, now_ms, now_s = clock()
local seq
for i = 15, #ARGV, 2 do
  local status = ending[ARGV[i]]
  if status then
    seq = end_run(k, s, run_id, status, ARGV[i], ARGV[i + 1], cjson.decode(ARGV[13]), ts, now_ms, now_s)
  else
    seq = add_event(k, s, ARGV[i], ARGV[i + 1], ts)
  end
end
redis.call('HSET', k.meta, 'last_append', append_id, 'last_append_seq', seq)
return seq
