-- Leases. A run's `lease` key holds the token of the worker running it, with no expiry: it is the
-- fence (appends and renewals must present it). When the lease runs out is the meta field
-- `lease_until` (Redis time, ms), pushed back by the holder; only a reaper, which requeues a run
-- whose deadline passed while Redis was healthy, takes a lease away. So a worker cut off from
-- Redis for longer than a lease carries on with its run if it comes back before a reaper acts.
-- Reapers find the sessions to look at in the leases index (shared/store/lease_index.py). On one Redis,
-- the scripts keep it exact, in the same step as the lease: a session is in it, scored with its
-- lease's deadline, while its run holds a lease. With SPLIT_QUEUE it is on the queue's Redis, out of
-- a script's reach: its callers keep it as a list of places to look, written before what it points at.
--
-- Jobs. A script that queues a run records its job in the session's `dispatch` field (`<job_id>
-- <run_id>`), which the worker that starts the run clears: until then a reaper that looks at the
-- session pushes it again (pushing twice queues once), so a run is never left queued without a job,
-- whatever ended its job (a worker that failed it, a job that expired). With the queue on the same
-- Redis, the script also writes the arq job itself, in the same atomic step, and puts the session in
-- the leases index for that look. With SPLIT_QUEUE, the field is an outbox: the caller pushes the job
-- to the queue, and keeps the index's entry (shared/store/lease_index.py).

-- The session's place in the leases index (see Leases above): at `deadline` (ms), or out of it.
local function index_lease(k, s, deadline)
  if SPLIT_QUEUE then return end
  if deadline then
    redis.call('ZADD', k.index, deadline, s.session_id)
  else
    redis.call('ZREM', k.index, s.session_id)
  end
end

-- Hand the session's active run to arq: now, or through the outbox (see Jobs above). The job names
-- the run's owner: the session's tenant, and a digest of its end user (any text a request named):
-- the run's `user`, else the session's. `run`: its record, when the caller has it decoded already.
-- `in_line`: a job that earns a slot in its tenant's line at the run's own place (push_job): a run
-- resumed after its answers or its children, a child.
local function queue_job(k, s, run_id, job_id, now_ms, run, in_line)
  local meta = redis.call('HMGET', k.meta, 'tenant', 'user')
  local dispatch = job_id .. ' ' .. run_id .. ' ' .. (meta[1] or 'public')
  run = run or cjson.decode(redis.call('HGET', k.runs, run_id))
  local user = run.user
  if type(user) ~= 'string' then user = meta[2] end
  local digest = user and string.sub(redis.sha1hex(user), 1, 16)
  if in_line then  -- its place: its tree's (a child's: spawn.lua), else when the run first queued
    local since = tonumber(run.line_at) or math.floor(1000 * (tonumber(run.queued_at) or now_ms / 1000))
    dispatch = dispatch .. ' ' .. (digest or '') .. ' ' .. since
  elseif digest then
    dispatch = dispatch .. ' ' .. digest
  end
  redis.call('HSET', k.meta, 'dispatch', dispatch, 'dispatched_at', now_ms)
  if not SPLIT_QUEUE then
    push_job(k.queue, s, s.session_id, dispatch, now_ms)
    index_lease(k, s, now_ms + s.queued_look_ms)
  end
end

-- A reply `r` of a script whose caller pushes what the session's outbox holds (SPLIT_QUEUE: its
-- contract's MAY_DISPATCH), with it: the job owed (`dispatch`) and a job to take out of its tenant's
-- line (`unqueue`: cancel_unheld's), read in the script's own step, so the caller reads nothing after it.
local function with_outbox(k, r)
  if SPLIT_QUEUE then
    local owed = redis.call('HMGET', k.meta, 'dispatch', 'unqueue')
    r.dispatch, r.unqueue = owed[1], owed[2]
  end
  return r
end
