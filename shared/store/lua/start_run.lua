-- A worker claims the session's active run: take the lease, count the attempt, append `run.started`
-- with its `reason`: `start` (its first) or `resume`. A run whose last worker died or handed it over
-- (status `running`, no lease) is taken over: the attempt goes up and, as the worker decided from the
-- run's record (worker/run/recovery/takeover.py), it goes on (`run.continued` keeping the run's events up to
-- `keep_until`) or, with no `keep_until`, starts over (`run.retrying`, then `run.started`: clients
-- drop what it streamed). A run queued again by the answer to its question (started before, status
-- `queued`) resumes as the same attempt: it goes on, nothing to drop. A fork's run (`forked_at`: made by
-- fork_session.lua, its events up to there copied) starts as its attempt 1, decided as a takeover is:
-- `run.started` with `reason: fork` and `from_event_id` (`keep_until`; 0 when it starts over, whatever
-- it streamed dropped). A duplicate delivery of a job
-- finds the lease taken, or the run over, and does nothing.
--
-- The job leaves arq's queue here, atomically with the claim (with SPLIT_QUEUE, the worker takes it
-- out right after, and clears the outbox here). arq marks a job it picks up as in
-- progress for a short while only (worker/process/main.py), so that a worker killed between picking a job
-- and this script leaves the job to be picked again within seconds; a job that got this far must
-- not be picked again when that mark lapses.
--
-- Sent again by the worker whose claim it was (its reply lost: the lease holds its token), it answers
-- as it did, from the meta's `claim` (what the claim decided), changing nothing.
--
-- Keys, arguments and replies: shared/store/scripts/runs.py `StartRun`. Claimed, its reply has the verdict
-- '' (run it), 'cancel' (a cancel is pending: end it cancelled) or 'exhausted' (too many attempts: end
-- it failed), the steps the run recorded, to replay (the steps hash, flat: see record_step.lua), and
-- the records of the session's runs, for the run's history (none when it is the session's only run;
-- none for a verdict: it ends at once). 'decide': a takeover, and `keep_until` is '' (nothing changed).
local run_id, token, lease_ms, max_attempts = a.run_id, a.lease_token, tonumber(a.lease_ms), tonumber(a.max_attempts)
local function steered() return redis.call('EXISTS', k.steers) == 1 end  -- steers wait: its first boundary takes them

-- The session's runs, what the worker's agent is given as the conversation so far (its history).
local function session_runs()
  if redis.call('HLEN', k.runs) == 1 then return {} end  -- this run alone: its own record is sent apart
  return redis.call('HVALS', k.runs)
end

-- With an archive, a session whose run is going is looked at this often (worker/process/archiver.py's claim).
local ARCHIVE_RUNNING_MS = 30000

-- A run that starts over takes in again the steers its dropped attempts took (`steps`: the steps
-- hash, flat): the drop took their `steer.applied` back. They go first, in the order they came.
local function steer_again(k, steps)
  local taken = {}
  for i = 1, #steps, 2 do
    local n = string.match(steps[i], '^' .. STEERS_STEP .. '#(%d+)$')
    if n then taken[#taken + 1] = {tonumber(n), cjson.decode(steps[i + 1])} end
  end
  table.sort(taken, function(x, y) return x[1] < y[1] end)
  for i = #taken, 1, -1 do
    local steers = taken[i][2]
    for j = #steers, 1, -1 do redis.call('LPUSH', k.steers, cjson.encode(steers[j])) end
  end
end

if redis.call('HGET', k.meta, 'active_run') ~= run_id then return reply.inactive{} end
if redis.call('HEXISTS', k.runs, run_id) == 0 then return reply.inactive{} end  -- (a child's lane its deleted session left)
local holder = redis.call('GET', k.lease)
if holder == token then
  -- This claim, sent again after its reply was lost (shared/connections/outage.py's ride_out): as it answered then.
  local claim = cjson.decode(redis.call('HGET', k.meta, 'claim'))
  local run_json, steps = redis.call('HGET', k.runs, run_id), redis.call('HGETALL', k.steps)
  local runs = claim.verdict == '' and session_runs() or {}
  return reply.ok{seq = claim.seq, run_json = run_json, verdict = claim.verdict, steps = steps, runs = runs, steered = steered()}
end
if holder then return reply.leased{} end
local run = get_run(k.runs, run_id)
if run.status ~= 'queued' and run.status ~= 'running' then return reply.not_running{} end

local ts, now_ms, now_s = clock()
local reason = 'start'
if type(run.forked_at) == 'number' then
  reason = 'fork'
elseif run.status == 'running' then
  reason = 'takeover'
elseif type(run.started_seq) == 'number' then
  reason = 'resume'
end
local verdict = ''
if redis.call('HGET', k.meta, 'cancel_run') == run_id then
  verdict = 'cancel'
elseif reason == 'takeover' and run.attempt - (run.handovers or 0) >= max_attempts then  -- a hand-over costs none
  verdict = 'exhausted'
end

if (reason == 'takeover' or reason == 'fork') and verdict == '' and a.keep_until == '' then return reply.decide{} end

redis.call('SET', k.lease, token)
redis.call('HSET', k.meta, 'lease_until', now_ms + lease_ms)
index_lease(k, s, now_ms + lease_ms)
-- With an archive, a running session is archived as it goes (a long run outgrows the stream's bound).
if ARCHIVE then redis.call('ZADD', k.archive, 'NX', now_ms + ARCHIVE_RUNNING_MS, s.session_id) end
redis.call('HDEL', k.meta, 'dispatch', 'dispatched_at')
if not SPLIT_QUEUE then redis.call('ZREM', k.queue, a.job_id) end
if verdict ~= '' then
  -- The lease lets the worker write the terminal event through the usual fenced append.
  local seq = last_seq(k)
  redis.call('HSET', k.meta, 'claim', cjson.encode({seq = seq, verdict = verdict}))
  return reply.ok{seq = seq, run_json = redis.call('HGET', k.runs, run_id), verdict = verdict, steps = {}, runs = {}}
end

if reason ~= 'resume' then run.attempt = run.attempt + 1 end
local seq
if reason == 'fork' then
  local from = a.keep_until == 'restart' and 0 or tonumber(a.keep_until)
  if from == 0 then
    run.steps, run.step_seq = nil, nil  -- it starts over: nothing of it is replayed
    redis.call('DEL', k.steps)
  end
  run.forked_at = nil
  seq = add_event(k, s, 'run.started', run_event(run, {run_id = run_id, attempt = run.attempt, reason = reason,
                                                       from_event_id = from}), ts)
elseif reason == 'takeover' and a.keep_until ~= 'restart' then
  local data = run_event(run, {run_id = run_id, attempt = run.attempt, from_event_id = tonumber(a.keep_until)})
  seq = add_event(k, s, 'run.continued', data, ts)
else
  if reason == 'takeover' then
    local data = run_event(run, {run_id = run_id, attempt = run.attempt, reason = 'the worker running attempt ' .. (run.attempt - 1) .. ' stopped'})
    add_event(k, s, 'run.retrying', data, ts)
    run.steps, run.step_seq = nil, nil  -- it starts over: nothing of it is replayed
    steer_again(k, redis.call('HGETALL', k.steps))  -- (run.steers keeps them: each its segment)
    redis.call('DEL', k.steps)
  end
  seq = add_event(k, s, 'run.started', run_event(run, {run_id = run_id, attempt = run.attempt, reason = reason}), ts)
end
run.status = 'running'
run.started_seq = seq
-- A dead attempt's start and how, for its span (shared/plumbing/run_spans.py).
run.previous_started_at = tonumber(run.attempt_started_at) or tonumber(run.started_at)
run.previous_started_as = run.started_as
run.attempt_started_at = now_s  -- this start's (a takeover's, a resume's after answers or children)
run.started_at = tonumber(run.started_at) or now_s  -- its first start, which the API and the console show
run.started_as = reason
local workers = run.workers or {}  -- which worker process made each start, in order (the console's timeline)
workers[#workers + 1] = a.worker
run.workers = workers
local run_json = cjson.encode(run)
redis.call('HSET', k.runs, run_id, run_json)
redis.call('HSET', k.meta, 'claim', cjson.encode({seq = seq, verdict = verdict}))
local steps = redis.call('HGETALL', k.steps)
return reply.ok{seq = seq, run_json = run_json, verdict = verdict, steps = steps, runs = session_runs(), steered = steered()}
