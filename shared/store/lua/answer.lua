-- Answer one of the questions a waiting run asked (ask.lua), once: append `input.received` and record
-- the answer (lib/questions.lua's take_answer); the last answer the run waits for queues it again, and
-- any worker continues it from there. Answers to several questions may come in any order, from any
-- gateway: each is recorded here, in Redis, none read and written back by a caller. An answer to a question the run
-- no longer waits for (answered already, expired, cancelled) changes nothing.
--
-- Keys, arguments and replies: shared/store/scripts/runs.py `Answer` (`answer`: JSON text).
if redis.call('EXISTS', k.meta) == 0 then
  if redis.call('EXISTS', k.gone) == 1 then return reply.gone{} end
  return reply.missing{}
end
local run_id = a.run_id
local raw = redis.call('HGET', k.runs, run_id)
if not raw then return reply.no_run{} end
local run = cjson.decode(raw)
local waiting = false
if run.status == 'waiting' then
  for _, input_id in ipairs(open_questions(run)) do waiting = waiting or input_id == a.input_id end
end
if not waiting then return reply.not_waiting{} end
local ts, now_ms = clock()
if a.who ~= '' then  -- who answered it, and through which gateway (the console's timeline shows them)
  local by = run.answered_by or {}
  by[a.input_id] = {who = a.who, gateway = a.gateway}
  run.answered_by = by
end
return reply.ok{seq = take_answer(k, s, run_id, run, a.input_id, a.answer, run_id .. '.a' .. a.job_suffix, ts, now_ms)}
