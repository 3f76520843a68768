-- Append events of running runs, one append per run, as many runs as the worker had waiting
-- (shared/scripts/pipeline.py sends them together): the per-token path. None of the events ends a run or
-- is reported to a webhook (append.lua takes those). Each append is fenced by the run's lease, and
-- each has its own reply: one fenced run does not stop the others.
--
-- Nothing in the meta is read or written on this path (see lib.lua's Seqs): the fence is the lease,
-- the order and the ids the stream's. An append's events take the ids after `expect`, the last seq
-- its worker was told it wrote. Entries already past it are another writer's (the gateway's
-- `run.queued` for a run in line: the append goes on after them) or this append's own, sent again
-- after its first try went through (by the writer, or by the Redis client's own retry): then its
-- first reply is given again. A joined call that finds the count of its process's joined calls as
-- expected (its pipeline's JoinCounter) knows no append of it is sent again and Redis lost none of
-- the events before `expect`: it checks nothing but the lease, and lets the stream refuse an id
-- taken (then it goes on after the stream's last entry). Any other call checks each append whole.
--
-- Keys and arguments: shared/scripts/runs.py `AppendEvents` (`each_call`: each append's `k` and
-- `a`; `expect`: see lib.lua's check_holder; the count: `joined_count` and `s.count`).
-- Returns the count (0 without one), then per append the seq of its last event, or a FENCED or LOST
-- error.
local COUNT_KEPT_MS = 86400000  -- a worker quiet for a day starts its count again (checking it all)
local ts = clock()
local count, sure = 0, false
if joined_count then
  count = redis.call('INCR', joined_count)
  redis.call('PEXPIRE', joined_count, COUNT_KEPT_MS)
  sure = s.count ~= '' and count == tonumber(s.count) + 1
end

-- The append's events from its `from`th pair on, as entries `first`, `first + 1`, ...: the seq of the last.
local function put_events(k, a, from, first, archived)
  local seq = first - 1
  for j = 2 * from - 1, #a.events, 2 do
    seq = seq + 1
    put_event(k, s, seq, a.events[j], a.events[j + 1], ts, archived)
  end
  return seq
end

-- An append checked whole: its lease, events lost (LOST), a try sent again that went through.
local function checked(k, a, expect, archived)
  local top = top_seq(k)
  local refused = check_holder(k, a.run_id, a.lease_token, top, expect)
  if refused then return refused end
  local landed = not sure and top > expect and appended_after(k, expect, a.events)
  return landed or put_events(k, a, 1, top + 1, archived)
end

-- An append whose events take the ids after `expect`: the seq of the last, or false if the stream
-- refused the first (another writer went past `expect`; then it refuses none of the next either).
local function appended(k, a, expect, archived)
  if not put_event(k, s, expect + 1, a.events[1], a.events[2], ts, archived, true) then return false end
  return put_events(k, a, 2, expect + 2, archived)
end

local replies = {count}
for i, k, a in each_call do
  local expect = tonumber(a.expect)
  local archived = ARCHIVE and tonumber(redis.call('HGET', k.meta, 'archived') or 0) or nil
  local reply = sure and #a.events > 0 and (fenced(k, a.run_id, a.lease_token) or appended(k, a, expect, archived))
  replies[i + 1] = reply or checked(k, a, expect, archived)
end
return replies
