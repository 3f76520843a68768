-- Append events of running runs, one append per run, as many runs as the worker had waiting
-- (shared/scripts/pipeline.py sends them together): the per-token path. None of the events ends a run or
-- is reported to a webhook (append.lua takes those). Each append is fenced and idempotent as in
-- append.lua, and each has its own reply: one fenced run does not stop the others.
--
-- Keys and arguments: shared/scripts/runs.py `AppendEvents` (`each_call`: each append's `k` and
-- `a`; `expect`: see lib.lua's check_holder).
-- Returns, per append, the seq of its last event, or a FENCED or LOST error.
local ts = clock()
local replies = {}
for i, k, a in each_call do
  local done, fenced, seq = check_append(k, a.run_id, a.lease_token, a.append_id, a.expect)
  if done or fenced then
    seq = done or fenced
  else  -- the session's seq is taken once for all the append's events (lib.lua's add_event: one each)
    for j = 1, #a.events, 2 do
      seq = seq + 1
      put_event(k, s, seq, a.events[j], a.events[j + 1], ts)
    end
    redis.call('HSET', k.meta, 'seq', seq, 'last_append', a.append_id, 'last_append_seq', seq)
  end
  replies[i] = seq
end
return replies
