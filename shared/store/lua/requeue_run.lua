-- Put a running run back in the queue for another worker to take over (see start_run.lua).
-- Two callers: a worker handing its run over on shutdown (it passes its lease token, which must
-- still be the lease; a hand-over does not count against the run's attempts), and a reaper looking
-- at a session the leases index named (it passes ''): it requeues a run whose lease deadline
-- passed, and finds the rest renewed, or with nothing to take over (the session was deleted, the
-- run ended), or with a run still owed its job (lib/jobs.lua's Jobs: its job is pushed again, here or, with
-- SPLIT_QUEUE, by the caller: the one that queued it may have died before pushing it, or arq ended it
-- unstarted). The lease is taken away with the requeue, so a run is requeued once.
--
-- A third: a worker whose run's events Redis lost, and which cannot append them again as they were
-- (worker/writes/lost_writes.py), hands the run over past them: followers may have read those ids,
-- so the session's seq moves up to the last one the worker was told it wrote (`past_seq`) and the run
-- goes on after them. No id is given out twice with two contents; readers find a hole there, which
-- the gateway announces as a `gap` (or the archive fills, with what followers read).
--
-- Keys and arguments: shared/store/scripts/runs.py `RequeueRun` (`job_suffix`: random, as arq refuses a
-- job id it still remembers: each requeue is a job of its own).
-- A run waiting for answers (ask.lua) has no lease: a reaper that finds a question's deadline passed
-- ends the question as the agent chose: the run fails (`input_expired`), or the question takes its
-- default answer (and the run goes on once none is left open); before the deadline, it looks again then.
-- Replies: shared/store/scripts/runs.py `RequeueRun`'s. 'requeued' and 'cleared' carry the job owed
-- (`<job_id> <run_id>`), which SPLIT_QUEUE's caller pushes; 'cleared' by a question that expired and
-- failed its run, that run's record too.
local token = a.lease_token
local _, now_ms = clock()
if token ~= '' then
  if redis.call('GET', k.lease) ~= token then return reply.not_holder{} end
elseif redis.call('EXISTS', k.lease) == 0 then
  local dispatch = redis.call('HGET', k.meta, 'dispatch')
  if dispatch then
    -- A run owed a job, not started yet: its job is pushed again (arq may have ended it unstarted), a
    -- no-op while the queue holds it; looked at again after as long as it has waited, so that a run
    -- in a long line costs a few looks.
    local dispatched_at = tonumber(redis.call('HGET', k.meta, 'dispatched_at') or now_ms)
    local look_again = now_ms + math.max(tonumber(s.queued_look_ms), now_ms - dispatched_at)
    local pushed = false
    if not SPLIT_QUEUE then
      pushed = push_job(k.queue, s, s.session_id, dispatch, now_ms)
    end
    return reply.dispatch{dispatch = dispatch, look_again_at = look_again, pushed = pushed}
  end
  local run_id = redis.call('HGET', k.meta, 'active_run')
  local run = run_id and run_id ~= '' and get_run(k.runs, run_id)
  if not run or run.status ~= 'waiting' or type(run.waiting_until) ~= 'number' then return reply.cleared{} end
  -- A run waiting for answers: look again at its questions' earliest deadline, or end those expired now,
  -- each as its agent chose: one that fails the run fails it; the others take their default answers.
  if run.waiting_until > now_ms then return reply.renewed{look_again_at = run.waiting_until} end
  local ts, _, now_s = clock()
  local expired = {}
  for _, input_id in ipairs(open_questions(run)) do
    local expiry = run.expiry and run.expiry[input_id]
    if expiry and expiry.at and expiry.at <= now_ms then
      if not expiry.default then
        local error = {type = 'input_expired', message = 'no answer to question ' .. input_id .. ' came before it expired'}
        end_run(k, s, run_id, 'failed', 'run.failed', run_event(run, {run_id = run_id, error = error}), {error = error}, ts, now_ms, now_s)
        -- The run it ended, for the run's span (worker/process/reaper.py).
        return reply.cleared{dispatch = redis.call('HGET', k.meta, 'dispatch'), expired = redis.call('HGET', k.runs, run_id)}
      end
      expired[#expired + 1] = input_id
    end
  end
  for _, input_id in ipairs(expired) do
    take_answer(k, s, run_id, run, input_id, run.expiry[input_id].default, run_id .. '.x' .. a.job_suffix, ts, now_ms)
  end
  if run.status == 'waiting' then  -- answers still to come, by a later deadline or none
    if run.waiting_until then return reply.renewed{look_again_at = run.waiting_until} end
    return reply.cleared{}
  end
  return reply.requeued{dispatch = redis.call('HGET', k.meta, 'dispatch')}
else
  local deadline = tonumber(redis.call('HGET', k.meta, 'lease_until') or 0)
  if deadline > now_ms then return reply.renewed{look_again_at = deadline} end
end
redis.call('DEL', k.lease)
redis.call('HDEL', k.meta, 'lease_until')
index_lease(k, s, nil)
local run_id = redis.call('HGET', k.meta, 'active_run')
if not run_id or run_id == '' then return reply.cleared{} end
if token ~= '' then
  local run = get_run(k.runs, run_id)
  run.handovers = (run.handovers or 0) + 1
  run.handed_over = run.attempt  -- it ended its own span: the takeover writes none for it (worker/run/traces.py)
  redis.call('HSET', k.runs, run_id, cjson.encode(run))
  local past = tonumber(a.past_seq)
  if past and past > last_seq(k) then redis.call('HSET', k.meta, 'seq', past) end
end
-- The lease's holder, stalled or cut off, may still append: from now on Redis refuses it (lib/seqs.lua).
fence(k)
queue_job(k, s, run_id, run_id .. '.' .. a.job_suffix, now_ms)
return reply.requeued{dispatch = redis.call('HGET', k.meta, 'dispatch')}
