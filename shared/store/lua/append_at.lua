-- The per-token path's appends (worker/writes/appends.py): many runs' events at the ids their workers
-- expect, one append per run, as many as a tick of the worker had due. Lean on purpose, and without
-- lib/ in front of it: per event it is one XADD and one PUBLISH, and nothing else.
--
-- No lease is read: the stream fences a worker that lost its run (lib/seqs.lua). An append's events
-- take the ids `<first>-0`, `<first + 1>-0`, ...: Redis refuses the first if it is not past the
-- stream's last id (another writer's event took it, a fence moved the last id, or the stream is gone:
-- NOMKSTREAM), and then the append is refused whole, nothing stored or published, and its worker
-- sends it through the checked path (append_events.lua), which tells a fenced run from one that goes
-- on after another writer's events. An id past a hole would be taken, though: Redis lost writes (a
-- failover to a replica a moment behind, a restart) only if the count of the process's joined calls
-- (`joined_count`, its JoinCounter) is not the one the worker expects, and then nothing is written
-- here and every append of the call goes the checked path.
--
-- Keys and arguments: shared/store/scripts/runs.py `AppendAt`. Returns the count, then per append the seq
-- of its last event, or 0 if it was refused.
local COUNT_KEPT_MS = 86400000  -- as append_events.lua's
local count = redis.call('INCR', joined_count)
if count % 256 == 1 then  -- kept a day from its first call and every 256th (on a cluster, a call each event)
  redis.call('PEXPIRE', joined_count, COUNT_KEPT_MS)  -- (gone, it starts again at 1: found off, all checked)
end
local replies = {count}
if s.count == '' or count ~= tonumber(s.count) + 1 then
  for i in each_call do replies[i + 1] = 0 end
  return replies
end
local time = redis.call('TIME')
local ts = time[1] .. string.format('%06d', time[2])
local maxlen = s.maxlen
for i, k, a in each_call do
  local events, seq = a.events, tonumber(a.first)
  local trim, bound = 'MAXLEN', maxlen
  if ARCHIVE then  -- the stream keeps what the archive does not have yet (lib/events.lua's put_event)
    local archived = tonumber(redis.call('HGET', k.meta, 'archived') or 0)
    trim, bound = 'MINID', math.max(0, math.min(seq - tonumber(maxlen), archived) + 1)
  end
  local added = redis.pcall('XADD', k.events, 'NOMKSTREAM', trim, '~', bound, seq .. '-0', 'type', events[1], 'data', events[2], 'ts', ts)
  if added and not added.err then
    redis.call(PUBLISH_EVENTS, k.events, seq .. ' ' .. ts .. ' ' .. events[1] .. ' ' .. events[2])
    for j = 3, #events, 2 do
      seq = seq + 1
      redis.call('XADD', k.events, trim, '~', bound, seq .. '-0', 'type', events[j], 'data', events[j + 1], 'ts', ts)
      redis.call(PUBLISH_EVENTS, k.events, seq .. ' ' .. ts .. ' ' .. events[j] .. ' ' .. events[j + 1])
    end
    replies[i + 1] = seq
  else
    replies[i + 1] = 0
  end
end
return replies
