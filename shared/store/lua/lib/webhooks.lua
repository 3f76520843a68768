-- Webhooks. A session with a `webhook` (meta field: its URL) keeps each event its webhook reports
-- in its `hooks` list, in the same step as the event, until a worker's deliverer (worker/process/webhook_delivery.py)
-- has posted it; the list outlives the session for as long as deliveries are retried. Deliverers
-- find the sessions to look at in the webhooks index (a sorted set beside the queue; see
-- shared/store/webhook_index.py): on one Redis this script puts the session in it, due now; with
-- SPLIT_QUEUE, the caller does, before and after the script.
local HOOKED = {['run.completed'] = true, ['run.failed'] = true, ['run.cancelled'] = true, ['input.required'] = true}

-- Which of a run's segments, the Responses API's responses, is going on: one more after each time it
-- went on after its questions were answered (`resumes`) and each steer taken in (its `steers`, kept as
-- opaque JSON). As RunRecord.segment (shared/vocabulary/records.py), which says why.
local function segment_of(run)
  local count = run.resumes or 0
  local steers = run.steers
  if type(steers) == 'string' then steers = cjson.decode(steers) end
  if type(steers) == 'table' then
    for _ in pairs(steers) do count = count + 1 end
  end
  return count
end

-- An entry also keeps the segment of its run that the event ends (segment_of): an OpenAI
-- webhook names that response, and the run's record may be gone (deleted) by its delivery.
-- A session whose tasks have push configs (meta field `a2a_push`, its first user's name: watch_task_push.lua)
-- keeps them too (entry `a2a`), with or without a URL of its own: the deliverer posts each to its task's
-- configs (shared/features/a2a_push.py).
local function add_hook(k, s, seq, event_type, data, ts, output)
  local hook = redis.call('HMGET', k.meta, 'webhook', 'tenant', 'a2a_push')
  local url = hook[1] or ''
  if url == '' and not hook[3] then return end
  local record = redis.call('HGET', k.runs, cjson.decode(data).run_id)
  local segment = record and segment_of(cjson.decode(record)) or 0
  local entry = {seq = seq, ts = ts, type = event_type, data = data, url = url, tenant = hook[2] or 'public',
                 output = output, segment = segment, a2a = hook[3] and true or nil}
  redis.call('RPUSH', k.hooks, cjson.encode(entry))
  redis.call('PEXPIRE', k.hooks, s.hooks_ttl_ms)
  if not SPLIT_QUEUE then redis.call('ZADD', k.hook_index, math.floor(tonumber(ts) / 1000), s.session_id) end
end
