-- Store an event as stream entry `<seq>-0` (the caller took `seq` past the last: see seqs.lua), or
-- `<seq>-1` right after a fence, and publish it, as `<seq> <ts> <type> <data>`, on the channel named
-- like the stream key: the gateways' hubs (gateway/live/hub.py) follow live sessions by these
-- notifications, not by reading.
-- With an archive, the stream keeps every event the archive does not have yet (its `archived` id in
-- the meta, which the archiver moves on), past the bound if it must: nothing is forgotten unarchived.
-- `try`: the stream may refuse `seq`, not past its last entry; then nothing is stored or published,
-- and it returns false. `told`: the event's data as the followers are told it, if not as stored (a
-- completed run's, with its output: its record keeps it, and the hubs need no read to add it back).
local function put_event(k, s, seq, event_type, data, ts, archived, try, told)
  local trim, bound = 'MAXLEN', s.maxlen
  if ARCHIVE then
    archived = archived or tonumber(redis.call('HGET', k.meta, 'archived') or 0)
    trim, bound = 'MINID', math.max(0, math.min(seq - tonumber(s.maxlen), archived) + 1)
  end
  local added = redis.pcall('XADD', k.events, trim, '~', bound, seq .. '-0', 'type', event_type, 'data', data, 'ts', ts)
  if type(added) == 'table' and added.err then
    -- Refused: another writer took the id (`try`), or a fence moved the stream's last id to `<seq>-0`
    -- with no entry there, and the entry takes `<seq>-1` (or the write itself failed: raised here).
    if try or top_seq(k) >= seq then return false end
    redis.call('XADD', k.events, trim, '~', bound, seq .. '-1', 'type', event_type, 'data', data, 'ts', ts)
  end
  redis.call(PUBLISH_EVENTS, k.events, seq .. ' ' .. ts .. ' ' .. event_type .. ' ' .. (told or data))
  return true
end

-- Fence the session's stream (see seqs.lua): its last id past its top, so that a worker that held its
-- run's lease until now can no longer append there. A stream not there (deleted, never made) needs none.
local function fence(k)
  if redis.call('EXISTS', k.events) == 1 then redis.call('XSETID', k.events, (last_seq(k) + 1) .. '-0') end
end

-- Append one event as the session's next seq; returns the seq. `output`: a completed run's answer,
-- which its webhook carries (the stream leaves it to the record); `told`: as put_event's.
local function add_event(k, s, event_type, data, ts, output, told)
  local seq = last_seq(k) + 1
  put_event(k, s, seq, event_type, data, ts, nil, false, told)
  if HOOKED[event_type] then add_hook(k, s, seq, event_type, data, ts, output) end
  return seq
end
