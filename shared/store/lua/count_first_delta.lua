-- Decide which gateway counts a run's time to first delta (gateway/live/first_delta.py): the first
-- to write one of its deltas to a client. A session's runs go one after another, so the session's
-- meta keeps one number, the `queued_seq` of the last run counted, and a run is counted if it was
-- queued after it. Nothing is kept per run, and it goes with the session. Nothing for a session gone.
--
-- Keys and arguments: shared/store/scripts/sessions.py `CountFirstDelta`.
-- Returns the run's record if this caller counts it, else false.
if redis.call('EXISTS', k.meta) == 0 then return false end
local raw = redis.call('HGET', k.runs, a.run_id)
if not raw then return false end
-- Its `queued_seq` read as cjson wrote it, without decoding the whole record (a kilobyte and more, for
-- one number): a record's strings hold no unescaped quote, so the pattern meets the field alone.
local seq = tonumber(string.match(raw, '"queued_seq":(%d+)')) or 0
if seq <= (tonumber(redis.call('HGET', k.meta, 'first_delta_seq')) or 0) then return false end
redis.call('HSET', k.meta, 'first_delta_seq', seq)
return raw
