-- Append events of running runs, one append per run, each checked whole: the per-token path's
-- checked path (worker/writes/appends.py sends here what append_at.lua refused, and the appends of runs the
-- count of the process's joined calls does not vouch for). None of the events ends a run or is
-- reported to a webhook (append.lua takes those). Each append is fenced by the run's lease, and each
-- has its own reply: one fenced run does not stop the others.
--
-- Nothing in the meta is read or written on this path (see lib/seqs.lua): the fence is the lease,
-- the order and the ids the stream's. An append's events take the ids after the stream's last entry,
-- which is `expect`, the last seq its worker was told it wrote, unless entries past it are another
-- writer's (the gateway's `run.queued` for a run in line, a steer: the append goes on after them) or
-- this append's own, sent again after its first try went through (by the worker, or by the Redis
-- client's own retry): then its first reply is given again. A call that finds the count of its
-- process's joined calls as expected (worker/writes/appends.py's JoinCounter) knows no append of it is a try
-- sent again, and does not look for one.
--
-- Keys and arguments: shared/store/scripts/runs.py `AppendEvents` (`each_call`: each append's `k` and
-- `a`; `expect`: see lib/seqs.lua's check_holder; the count: `joined_count` and `s.count`).
-- Returns the count (0 without one), then per append the seq of its last event, or a FENCED or LOST
-- error.

-- The seq of the last of `events` (type, data pairs) if they are entries of the stream after
-- `expect`, one after the other: an append of the per-token path sent again whose first try went
-- through, maybe after another writer's events. Asked for the lease's holder only: its worker appends
-- nothing else meanwhile (one append in flight per run), and no one else writes its run's events
-- after `expect` (an earlier attempt is fenced): entries equal to its own are its own.
local function appended_after(k, expect, events)
  local entries = redis.call('XRANGE', k.events, expect + 1, '+')
  for i, entry in ipairs(entries) do
    if entry[2][2] == events[1] and entry[2][4] == events[2] then
      local n = #events / 2
      for j = 2, n do
        local fields = (entries[i + j - 1] or {})[2]
        if not fields or fields[2] ~= events[2 * j - 1] or fields[4] ~= events[2 * j] then return nil end
      end
      return tonumber(string.match(entries[i + n - 1][1], '^%d+'))
    end
  end
  return nil
end

local COUNT_KEPT_MS = 86400000  -- a worker quiet for a day starts its count again (checking it all)
local ts = clock()
local count, sure = 0, false
if joined_count then
  count = redis.call('INCR', joined_count)
  redis.call('PEXPIRE', joined_count, COUNT_KEPT_MS)
  sure = s.count ~= '' and count == tonumber(s.count) + 1
end

local replies = {count}
for i, k, a in each_call do
  local expect = tonumber(a.expect)
  local archived = ARCHIVE and tonumber(redis.call('HGET', k.meta, 'archived') or 0) or nil
  local top = top_seq(k)
  local refused = check_holder(k, a.run_id, a.lease_token, top, expect)
  local landed = not refused and not sure and top > expect and appended_after(k, expect, a.events)
  if not (refused or landed) then
    landed = top
    for j = 1, #a.events, 2 do
      landed = landed + 1
      put_event(k, s, landed, a.events[j], a.events[j + 1], ts, archived)
    end
  end
  replies[i + 1] = refused or landed
end
return replies
