-- The run's agent takes in the steers waiting for it (lib/steers.lua), at one of its boundaries:
-- fenced as an append, each gets its `steer.applied`, and together they are recorded as the run's
-- step `step_key` (after the events they follow: the step's seq), so an attempt that goes on from the
-- run's record replays them, and none is ever applied twice. The run's record keeps their ids too, with
-- how much of its answer came before them (`output_at`), for its transcript (their texts are the
-- session's steered hash's: lib/steers.lua); one taken in again after
-- a start over keeps its entry, at its new place (the run's segments only grow: RunRecord.segment). Sent again after its
-- reply was lost, it finds its step recorded and answers as it did.
--
-- Keys, arguments and replies: shared/store/scripts/runs.py `ApplySteers` (`expect`: see lib/seqs.lua's
-- check_holder), or an error starting with FENCED or LOST.
local recorded = redis.call('HGET', k.steps, a.step_key)
if recorded then return reply.applied{seq = last_seq(k), steers = recorded} end
local refused = check_holder(k, a.run_id, a.lease_token, last_seq(k), a.expect)
if refused then return refused end
local raws = redis.call('LRANGE', k.steers, 0, -1)
if #raws == 0 then return reply.none{} end
local ts = clock()
local run = get_run(k.runs, a.run_id)
local taken = run.steers and cjson.decode(run.steers) or {}
local seq
for _, raw in ipairs(raws) do
  local steer = cjson.decode(raw)
  seq = add_event(k, s, 'steer.applied', cjson.encode({run_id = a.run_id, steer_id = steer.steer_id}), ts)
  local at = #taken + 1
  for i, before in ipairs(taken) do
    if before.steer_id == steer.steer_id then at = i end
  end
  taken[at] = {steer_id = steer.steer_id, output_at = tonumber(a.output_at)}
end
run.steers = cjson.encode(taken)  -- (opaque, as the record's lists are: shared/store/reads.py)
redis.call('HSET', k.runs, a.run_id, cjson.encode(run))
local steers = '[' .. table.concat(raws, ',') .. ']'
local bytes = tonumber(redis.call('HGET', k.steps, 'bytes') or 0) + #steers
redis.call('HSET', k.steps, a.step_key, steers, 'seq', seq, 'bytes', bytes, '@' .. a.step_key, seq)
redis.call('DEL', k.steers)
return reply.applied{seq = seq, steers = steers}
