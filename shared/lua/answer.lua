-- Answer the question a waiting run asked (ask.lua), once: append `input.received`, record the
-- answers (the caller passes the run's whole `answers` map, JSON kept opaque: no one else writes it
-- while the run waits) and queue the run again; any worker continues it from there. An answer to a
-- question the run no longer waits for (answered already, expired, cancelled) changes nothing.
--
-- Keys, arguments and replies: shared/scripts/runs.py `Answer`.
if redis.call('EXISTS', k.meta) == 0 then
  if redis.call('EXISTS', k.gone) == 1 then return reply.gone{} end
  return reply.missing{}
end
local run_id = a.run_id
local raw = redis.call('HGET', k.runs, run_id)
if not raw then return reply.no_run{} end
local run = cjson.decode(raw)
if run.status ~= 'waiting' or run.waiting_for ~= a.input_id then return reply.not_waiting{} end
local ts, now_ms = clock()
return reply.ok{seq = resume_run(k, s, run_id, run, a.received, a.answers, run_id .. '.a' .. a.job_suffix, ts, now_ms)}
