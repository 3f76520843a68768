-- Seqs. A session's events are its stream's entries `<seq>-0`, seq 1, 2, ...: the stream's last
-- entry is the last seq given out. The meta's `seq` is only a floor under it, for a session whose
-- stream holds none of its events yet (brought back from the archive: revive_session.lua; a fork)
-- and for ids that must not be given out again (lost with Redis: requeue_run.lua's `past_seq`).
-- A running run's stream is never below that floor (its start wrote past it), so the per-token path
-- (append_at.lua, append_events.lua) reads the stream alone, and only when it checks an append whole.
--
-- The fence. The per-token path (append_at.lua) checks no lease: it appends a run's events at the ids
-- after the last its worker was told it wrote, `<seq>-0`, and Redis refuses an id not past the
-- stream's last generated id. So every script that takes a run's lease away from a worker that may
-- still be running it (a reaper's takeover, a hand-over, a cancel of a run no worker holds, a delete)
-- fences the stream: `fence` moves its last generated id past its top (XSETID `<top+1>-0`, no entry
-- written), and the old holder's next `XADD <top+1>-0` is refused by Redis itself, before and after
-- the new owner writes (a deleted stream refuses it too: NOMKSTREAM). The first entry after a fence
-- takes `<seq>-1` (put_event): seqs stay contiguous, and every reader takes an entry's seq as the
-- number before its dash, so ids, `MINID` retention and resumes are unchanged. A read after seq `n`
-- therefore starts at `n + 1` (inclusive), never at `(n-0` (which `n-1` would pass). The contracts say
-- which scripts fence (`Effect.TAKES_LEASE`), and tests/unit/test_contract.py checks that they do.
local function top_seq(k)
  local top = redis.call('XREVRANGE', k.events, '+', '-', 'COUNT', 1)[1]
  return top and tonumber(string.match(top[1], '^%d+')) or 0
end

local function last_seq(k)
  return math.max(top_seq(k), tonumber(redis.call('HGET', k.meta, 'seq') or 0))
end

-- Whether the run's worker may write: the FENCED error when the run's lease is no longer its
-- `token` (`fenced`: that check alone); the LOST error when the session's last seq is below
-- `expect`, the last seq the worker was told it wrote (Redis lost writes it acknowledged: a failover
-- to a replica a moment behind, a restart without them), for the worker to write them again under
-- their ids before going on; else nil.
local function fenced(k, run_id, token)
  if redis.call('GET', k.lease) ~= token then
    return redis.error_reply('FENCED run ' .. run_id .. ' no longer holds its lease')
  end
end

local function check_holder(k, run_id, token, seq, expect)
  local refused = fenced(k, run_id, token)
  if refused then return refused end
  if seq < tonumber(expect) then
    return redis.error_reply('LOST ' .. seq .. ' is the last seq of run ' .. run_id .. "'s session, not " .. expect)
  end
end

-- The checks before an append (append.lua), with `k` the session's keys: the seq of the first try
-- when this append went through already (sent again after its reply was lost: by the writer, or by
-- the Redis client's own retry, so even a "first" try may be a second); or nil and check_holder's
-- error; or nil, nil when the append may go ahead.
local function check_append(k, run_id, token, append_id, expect)
  local meta = redis.call('HMGET', k.meta, 'last_append', 'last_append_seq')
  if meta[1] == append_id then
    return tonumber(meta[2])
  end
  return nil, check_holder(k, run_id, token, last_seq(k), expect)
end

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
