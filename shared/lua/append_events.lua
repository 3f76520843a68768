-- Append events of running runs, one append per run, as many runs as the worker had waiting
-- (worker/pipelines.py sends them together): the per-token path. None of the events ends a run or
-- is reported to a webhook (append.lua takes those). Each append is fenced and idempotent as in
-- append.lua, and each has its own reply: one fenced run does not stop the others.
--
-- KEYS: meta, events, lease of each append, in order
-- ARGV: maxlen, then for each append: run_id, lease_token, append_id, expect (lib.lua's
--   check_holder), the number of events, then their event type, data pairs
-- Returns, per append, the seq of its last event, or a FENCED or LOST error.
local s = {maxlen = ARGV[1]}
local ts = clock()
local replies = {}
local a = 2
for i = 1, #KEYS, 3 do
  local k = {meta = KEYS[i], events = KEYS[i + 1], lease = KEYS[i + 2]}
  local run_id, append_id, first, last = ARGV[a], ARGV[a + 2], a + 5, a + 4 + 2 * tonumber(ARGV[a + 4])
  local done, fenced, seq = check_append(k, run_id, ARGV[a + 1], append_id, ARGV[a + 3])
  if done or fenced then
    seq = done or fenced
  else  -- the session's seq is taken once for all the append's events (lib.lua's add_event: one each)
    for j = first, last, 2 do
      seq = seq + 1
      put_event(k, s, seq, ARGV[j], ARGV[j + 1], ts)
    end
    redis.call('HSET', k.meta, 'seq', seq, 'last_append', append_id, 'last_append_seq', seq)
  end
  replies[#replies + 1] = seq
  a = last + 1
end
return replies
