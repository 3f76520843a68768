-- Steer the session's active run (lib/steers.lua, add_steer): the worker running it takes the input
-- in at its agent's next boundary. Any run still to finish may be steered: running, queued (it takes
-- the steer in at its first boundary), or waiting for an answer (after it).
--
-- A caller that saw a run names it (`expected`): the steer is kept only if that run is still the
-- active one. Sent again (its reply lost, or a client's retry with the same idempotency key), it
-- finds its steer kept and answers as it did, whenever it comes (lib/steers.lua).
--
-- Keys, arguments and replies: shared/store/scripts/runs.py `SteerRun`.
if redis.call('EXISTS', k.meta) == 0 then
  if redis.call('EXISTS', k.gone) == 1 then return reply.gone{} end
  return reply.missing{}
end
local steered, steered_seq = steered_before(k, a.steer_id)
if steered then return reply.again{run_id = steered, seq = steered_seq} end
local run_id = redis.call('HGET', k.meta, 'active_run')
if not run_id or run_id == '' then return reply.not_active{} end
if a.expected ~= '' and a.expected ~= run_id then return reply.not_active{run_id = run_id} end
local outcome, seq = add_steer(k, s, run_id, a.steer_id, a.input, tonumber(a.chars), tonumber(a.most),
                               tonumber(a.most_chars), a.steer_channel)
return reply[outcome]{seq = seq, run_id = run_id}
