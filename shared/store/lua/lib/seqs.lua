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
-- which scripts fence (`Effect.TAKES_LEASE`), and tests/unit/shared/store/test_contract.py checks that they do.
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
