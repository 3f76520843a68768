-- Cancel the active run. A run no worker holds (still queued, picked up by a worker that died
-- before starting it, waiting for a takeover or for an answer) ends here and now with
-- `run.cancelled`; a held run is marked and its worker told, which stops the model and writes
-- `run.cancelled` itself (or learns of it at its next renewal, if the message is missed). Asking
-- twice changes nothing.
--
-- A caller that saw a run names it, and the run is cancelled only if it is still the active one:
-- the check and the cancel are one step, so a cancel meant for a run that ended meanwhile never
-- lands on the run that came after it. A Responses API response is a run's segment (its part
-- after it went on from its questions or took a steer in, k times; lib/webhooks.lua's segment_of): a caller
-- naming one also gives k, and the run is cancelled only while it is in segment k, i.e. before the
-- answers or steer that open the next response. With `ended_at_question`, not while it waits for
-- answers either: the response ended at its questions (a stream's client leaving then leaves them to
-- be answered).
--
-- Keys, arguments and replies: shared/store/scripts/runs.py `CancelRun` (`expected`: the run expected
-- active, '' the active one, whichever; `segment`: segment_of the run, '' any;
-- `ended_at_question`: '1' to leave it alone while it waits for the answer to that question;
-- `rollback`: '1' to mark the run `rolled_back` too: the conversation leaves it out, as if never asked).
if redis.call('EXISTS', k.meta) == 0 then
  if redis.call('EXISTS', k.gone) == 1 then return reply.gone{} end
  return reply.missing{}
end
local expected, segment, ended_at_question = a.expected, a.segment, a.ended_at_question == '1'
local run_id = redis.call('HGET', k.meta, 'active_run')
if expected ~= '' then
  if redis.call('HEXISTS', k.runs, expected) == 0 then return reply.no_run{} end
  if run_id ~= expected then return reply.not_active{run_id = expected} end
  if segment ~= '' then
    local run = get_run(k.runs, run_id)
    if segment_of(run) ~= tonumber(segment) or (ended_at_question and run.status == 'waiting') then
      return reply.not_active{run_id = expected}
    end
  end
end
if not run_id or run_id == '' then return reply.idle{} end
if a.rollback == '1' then roll_back(k.runs, run_id) end
if redis.call('EXISTS', k.lease) == 0 then
  cancel_unheld(k, s, run_id, a.reason)
  return reply.cancelled{run_id = run_id}
end
if redis.call('HGET', k.meta, 'cancel_run') ~= run_id then
  redis.call('HSET', k.meta, 'cancel_run', run_id)
  redis.call('PUBLISH', a.cancel_channel, run_id)
end
return reply.signalled{run_id = run_id}
