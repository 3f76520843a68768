-- Steers. Input for the active run while it runs waits in the session's `steers` list (each a JSON
-- record {steer_id, run_id, input}, in the order sent: steer.lua) until its agent takes it in
-- (apply_steers.lua: `steer.applied`, and the steers recorded as a step of the run, so an attempt that
-- goes on replays them and never applies them twice) or the run ends (`steer.failed`, here).
-- At most MAX_PENDING_STEERS wait per run; a client that sends more is told to wait (429). Every steer
-- is kept in the session's `steered` hash, under its id, with the run it went to and its
-- `steer.accepted`, so that the same steer sent again, whenever it comes (waiting, taken in, its run
-- ended), answers as the first did and is never kept twice; with each run's count and characters of
-- steers, which a run's bounds (`most`, `most_chars`; 0: none) refuse beyond; and its text (`i:<id>`),
-- which a run's record does not keep: taking a steer in then rewrites a record that holds only the
-- ids and places of those before it, never their texts, so its cost does not grow with them
-- (apply_steers.lua; readers put the texts back: shared/store/reads.py's with_steer_texts). The hash lives
-- as the session's runs do: kept while a run is to come (queue_run.lua), expiring after the last.
local function fail_steers(k, s, reason, ts)
  local steers = redis.call('LRANGE', k.steers, 0, -1)
  if #steers == 0 then return end  -- (no DEL: a script's first write must be one a full Redis refuses)
  for _, raw in ipairs(steers) do
    local steer = cjson.decode(raw)
    local data = cjson.encode({run_id = steer.run_id, steer_id = steer.steer_id, reason = reason})
    add_event(k, s, 'steer.failed', data, ts)
  end
  redis.call('DEL', k.steers)
end

-- A steer kept before under `steer_id` (a request sent again): the run it went to and the seq of its
-- `steer.accepted`; else nil.
local function steered_before(k, steer_id)
  local kept = redis.call('HGET', k.steered, steer_id)
  if not kept then return nil end
  local run_id, seq = string.match(kept, '^(%S+) (%d+)$')
  return run_id, tonumber(seq)
end

-- Keep a steer of `chars` characters for the session's active run `run_id` (steer.lua; queue_run.lua's
-- multitask `steer`): its record, then `steer.accepted`, then a word to the worker (`channel`).
-- Returns 'ok' and the event's seq; 'too_many' (as many wait as may); 'limit' (the run took in as many
-- steers, or characters of them, as it may). A steer sent again is found by steered_before, first.
local function add_steer(k, s, run_id, steer_id, input, chars, most, most_chars, channel)
  if redis.call('LLEN', k.steers) >= MAX_PENDING_STEERS then return 'too_many' end
  local count, taken = unpack(redis.call('HMGET', k.steered, 'n:' .. run_id, 'c:' .. run_id))
  count, taken = tonumber(count or 0), tonumber(taken or 0)
  if (most > 0 and count >= most) or (most_chars > 0 and taken + chars > most_chars) then return 'limit' end
  local steer = cjson.encode({steer_id = steer_id, run_id = run_id, input = input})  -- the record, and the event's data
  redis.call('RPUSH', k.steers, steer)
  local seq = add_event(k, s, 'steer.accepted', steer, (clock()))
  redis.call('HSET', k.steered, steer_id, run_id .. ' ' .. seq, 'n:' .. run_id, count + 1, 'c:' .. run_id,
             taken + chars, 'i:' .. steer_id, input)
  redis.call('PUBLISH', channel, run_id)
  return 'ok', seq
end
