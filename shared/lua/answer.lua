-- Answer the question a waiting run asked (ask.lua), once: append `input.received`, record the
-- answers (the caller passes the run's whole `answers` map, JSON kept opaque: no one else writes it
-- while the run waits) and queue the run again; any worker continues it from there. An answer to a
-- question the run no longer waits for (answered already, expired, cancelled) changes nothing.
--
-- KEYS, ARGV: as lib.lua's session_context, then ARGV[10] run_id, ARGV[11] input_id, ARGV[12] answers
--   (JSON), ARGV[13] the input.received event's data, ARGV[14] a job id suffix
-- Returns {'ok', seq} | {'not_waiting', status, waiting_for or ''} | {'no_run'} | {'missing'} | {'gone'}
local k, s = session_context()
if redis.call('EXISTS', k.meta) == 0 then
  if redis.call('EXISTS', k.gone) == 1 then return {'gone'} end
  return {'missing'}
end
local run_id = ARGV[10]
local raw = redis.call('HGET', k.runs, run_id)
if not raw then return {'no_run'} end
local run = cjson.decode(raw)
if run.status ~= 'waiting' or run.waiting_for ~= ARGV[11] then
  local waiting = run.waiting_for
  if type(waiting) ~= 'string' then waiting = '' end
  return {'not_waiting', run.status, waiting}
end
local ts, now_ms = clock()
return {'ok', resume_run(k, s, run_id, run, ARGV[13], ARGV[12], run_id .. '.a' .. ARGV[14], ts, now_ms)}
