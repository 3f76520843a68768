-- Answer one of the questions a waiting run asked (ask.lua), once: append `input.received` and record
-- the answer (lib/questions.lua's take_answer); the last answer the run waits for queues it again, and
-- any worker continues it from there. Answers to several questions may come in any order, from any
-- gateway: each is recorded here, in Redis, none read and written back by a caller. An answer to a question the run
-- no longer waits for (answered already, expired, cancelled) changes nothing.
--
-- Keys, arguments and replies: shared/store/scripts/runs.py `Answer` (`answer`: JSON text).
local run_id = a.run_id
local run, refused = waiting_run(k, run_id, a.input_id)
if not run then return reply[refused]{} end
local ts, now_ms = clock()
if a.who ~= '' then  -- who answered it, and through which gateway (the console's timeline shows them)
  local by = run.answered_by or {}
  by[a.input_id] = {who = a.who, gateway = a.gateway}
  run.answered_by = by
end
return reply.ok{seq = take_answer(k, s, run_id, run, a.input_id, a.answer, run_id .. '.a' .. a.job_suffix, ts, now_ms)}
