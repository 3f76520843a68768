-- Append events of running runs, one append per run, as many runs as the worker had waiting
-- (shared/scripts/pipeline.py sends them together): the per-token path. None of the events ends a run or
-- is reported to a webhook (append.lua takes those). Each append is fenced by the run's lease, and
-- each has its own reply: one fenced run does not stop the others.
--
-- Nothing in the meta is read or written on this path (see lib.lua's Seqs): the fence is the lease,
-- the order and the ids the stream's. Entries past `expect`, the last seq its worker was told it
-- wrote, are another writer's (the gateway's `run.queued` for a run in line: the append goes on
-- after them) or this append's own, sent again after its first try went through (by the writer, or
-- by the Redis client's own retry): then its first reply is given again.
--
-- Keys and arguments: shared/scripts/runs.py `AppendEvents` (`each_call`: each append's `k` and
-- `a`; `expect`: see lib.lua's check_holder).
-- Returns, per append, the seq of its last event, or a FENCED or LOST error.
local ts = clock()
local replies = {}
for i, k, a in each_call do
  local expect = tonumber(a.expect)
  local top = top_seq(k)
  local refused = check_holder(k, a.run_id, a.lease_token, top, expect)
  local landed = not refused and top > expect and appended_after(k, expect, a.events)
  if refused or landed then
    replies[i] = refused or landed
  else
    local archived = ARCHIVE and tonumber(redis.call('HGET', k.meta, 'archived') or 0) or nil
    local seq = top
    for j = 1, #a.events, 2 do
      seq = seq + 1
      put_event(k, s, seq, a.events[j], a.events[j + 1], ts, archived)
    end
    replies[i] = seq
  end
end
return replies
